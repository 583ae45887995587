import sys

from django.core.management.base import BaseCommand, CommandError

from evaluation import exchange
from evaluation.models import InferenceRun


class Command(BaseCommand):
    help = "Import the released runner's critiques (question_id, Rating, Reason) as a critic run over RUN_ID."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--run", type=int, required=True)
        parser.add_argument("--critic", required=True, help="a name for the critic (an existing critic endpoint links)")

    def handle(self, *args, **o) -> None:
        run = InferenceRun.objects.filter(pk=o["run"]).first()
        if run is None:
            raise CommandError(f"No inference run {o['run']}.")
        try:
            with open(o["file"], encoding="utf-8-sig") as handle:
                critic_run, report = exchange.critiques_import(lines=handle, run=run, critic_name=o["critic"])
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Can't read {o['file']}: {exc}") from None
        if critic_run is not None:
            self.stdout.write(f"critic_run_id={critic_run.pk}")
        for number, reason in report.failed:
            self.stderr.write(f"line {number}: {reason}")
        if critic_run is None:
            raise CommandError("Nothing imported: no line could be read (see above).")
        self.stdout.write(f"scored={critic_run.done} unparsed={critic_run.unparsed} failed={len(report.failed)}")
        if report.failed:
            sys.exit(1)
