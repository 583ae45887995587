from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from evaluation import inference
from evaluation.forms import parse_variants
from evaluation.management.waiting import wait_and_report
from evaluation.models import ModelEndpoint


class Command(BaseCommand):
    help = "Start an inference run on the workers; with --wait, block until it finishes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--endpoint", required=True)
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
        parser.add_argument("--variants", default="", help="e.g. 0 or 0-5 (default: all)")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=None, help="seconds to wait at most")

    def handle(self, *args, **o) -> None:
        endpoint = ModelEndpoint.objects.filter(name=o["endpoint"]).first()
        dataset = Dataset.objects.filter(name=o["dataset"]).first()
        if endpoint is None:
            raise CommandError(f"No endpoint named {o['endpoint']!r} (see `manage.py add_endpoint`).")
        if dataset is None:
            raise CommandError(f"No dataset named {o['dataset']!r}.")
        tasks = [t.strip() for t in o["tasks"].split(",") if t.strip()]
        try:
            variants = parse_variants(o["variants"])
            run = inference.inference_run_create(endpoint=endpoint, dataset=dataset, tasks=tasks, variants=variants)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"run_id={run.pk}")
        self.stdout.flush()
        if not o["wait"]:
            return
        wait_and_report(self, run, timeout=o["timeout"], summary=lambda r: f"done={r.done} failed={r.failed}",
                        problems=lambda r: [p for p in (r.error, r.failed and f"{r.failed} items failed: "
                                                        "their errors are on the run page, which can retry them") if p])
