from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset, DatasetFrozen
from evaluation import rewrites
from evaluation.management.waiting import wait_and_report
from evaluation.models import ModelEndpoint, PromptTemplate


class Command(BaseCommand):
    help = "Ask a rewriter endpoint for N equivalent phrasings of every seed question of a dataset."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--endpoint", required=True)
        parser.add_argument("--dataset", required=True)
        parser.add_argument("--per-seed", type=int, default=5)
        parser.add_argument("--tasks", default="", help="comma-separated task names (default: all but dialogues)")
        parser.add_argument("--template", default="", help="NAME:VERSION of a rewrite template (default: ours)")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=None)

    def handle(self, *args, **o) -> None:
        endpoint = ModelEndpoint.objects.filter(name=o["endpoint"]).first()
        dataset = Dataset.objects.filter(name=o["dataset"]).first()
        if endpoint is None or dataset is None:
            raise CommandError(f"Unknown {'endpoint' if endpoint is None else 'dataset'}.")
        template = None
        if o["template"]:
            name, _, version = o["template"].partition(":")
            template = PromptTemplate.objects.filter(kind="rewrite", name=name, version=int(version or 1)).first()
            if template is None:
                raise CommandError(f"No rewrite template {o['template']!r}.")
        if not 1 <= o["per_seed"] <= 20:
            raise CommandError("--per-seed must be between 1 and 20.")
        tasks = [t.strip() for t in o["tasks"].split(",") if t.strip()]
        try:
            run = rewrites.rewrite_run_create(endpoint=endpoint, dataset=dataset, template=template,
                                              per_seed=o["per_seed"], tasks=tasks)
        except DatasetFrozen as exc:
            raise CommandError(" ".join(exc.messages)) from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"rewrite_run_id={run.pk} seeds={run.total}")
        self.stdout.flush()
        if not o["wait"]:
            return
        wait_and_report(
            self, run, timeout=o["timeout"],
            summary=lambda r: (f"seeds={r.done} failed={r.failed} proposed={r.proposed} "
                               f"duplicates_dropped={r.duplicates_dropped}"),
            problems=lambda r: [*(f"{e['question_id']}: {e['error']}" for e in r.report), *([r.error] if r.error else [])],
        )
