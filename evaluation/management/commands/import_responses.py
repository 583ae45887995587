import sys

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from evaluation import services
from evaluation.models import ModelEndpoint


class Command(BaseCommand):
    help = "Import answers made elsewhere (official JSONL) as a run of ENDPOINT over DATASET."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--endpoint", required=True)
        parser.add_argument("--dataset", required=True)

    def handle(self, *args, **o) -> None:
        endpoint = ModelEndpoint.objects.filter(name=o["endpoint"]).first()
        dataset = Dataset.objects.filter(name=o["dataset"]).first()
        if endpoint is None or dataset is None:
            raise CommandError(f"Unknown {'endpoint' if endpoint is None else 'dataset'}.")
        try:
            with open(o["file"], encoding="utf-8-sig") as handle:
                run, report = services.responses_import(lines=handle, endpoint=endpoint, dataset=dataset)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Can't read {o['file']}: {exc}") from None
        self.stdout.write(f"run_id={run.pk}")
        for number, reason in report.failed:
            self.stderr.write(f"line {number}: {reason}")
        self.stdout.write(report.summary())
        if report.failed:
            sys.exit(1)
