import sys

from django.core.management.base import BaseCommand, CommandError

from annotation.ratings import human_scores_import
from evaluation.models import InferenceRun


class Command(BaseCommand):
    help = ('Import human scores made elsewhere: {"question_id", "annotator", "score", "rationale"} lines, '
            "scores of RUN_ID's answers; new annotators are created inactive.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--run", type=int, required=True, help="the inference run whose answers were scored")

    def handle(self, *args, **o) -> None:
        run = InferenceRun.objects.select_related("dataset").filter(pk=o["run"]).first()
        if run is None:
            raise CommandError(f"No inference run {o['run']}.")
        try:
            with open(o["file"], encoding="utf-8-sig") as handle:
                report = human_scores_import(lines=handle, run=run)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Can't read {o['file']}: {exc}") from None
        self.stdout.write(report.summary())
        if not report.imported and not report.unchanged:
            raise CommandError("Nothing imported: no line could be used (see above).")
        if report.failed:
            sys.exit(1)
