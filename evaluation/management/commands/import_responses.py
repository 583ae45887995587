import sys

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from evaluation import exchange
from evaluation.models import InferenceRun, ModelEndpoint


class Command(BaseCommand):
    help = "Import answers made elsewhere (official JSONL) as a run of ENDPOINT over DATASET."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file")
        parser.add_argument("--endpoint", required=True)
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--run", type=int, help="Add to this earlier import (after fixing its failed lines).")

    def handle(self, *args, **o) -> None:
        endpoint = ModelEndpoint.objects.filter(name=o["endpoint"]).first()
        if endpoint is None:
            raise CommandError(f"Unknown endpoint {o['endpoint']!r} (add_endpoint creates one).")
        dataset = Dataset.objects.filter(name=o["dataset"]).first()
        if dataset is None:
            raise CommandError(f"Unknown dataset {o['dataset']!r}.")
        run = None
        if o["run"] is not None and (run := InferenceRun.objects.filter(pk=o["run"]).first()) is None:
            raise CommandError(f"Unknown run {o['run']}.")
        try:
            with open(o["file"], encoding="utf-8-sig") as handle:
                run, report = exchange.responses_import(lines=handle, endpoint=endpoint, dataset=dataset, run=run)
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Can't read {o['file']}: {exc}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for number, reason in report.failed:
            self.stderr.write(f"line {number}: {reason}")
        if run is None:
            raise CommandError(f"Nothing imported ({report.summary()}): no run was created.")
        self.stdout.write(f"run_id={run.pk}")
        self.stdout.write(report.summary())
        if report.failed:
            self.stderr.write(f"Fix the lines above and import the file again with --run {run.pk}: "
                              "the answers already in are kept (counted as unchanged).")
            sys.exit(1)
