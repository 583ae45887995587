from django.core.management.base import BaseCommand, CommandError

from evaluation import critics
from evaluation.management.waiting import wait_and_report
from evaluation.models import InferenceRun, ModelEndpoint, PromptTemplate


class Command(BaseCommand):
    help = "Score an inference run's answers with a critic; with --wait, block until it finishes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--critic", required=True, help="critic endpoint name")
        parser.add_argument("--run", type=int, action="append", required=True, help="inference run id (repeatable)")
        parser.add_argument("--template", default="", help="NAME:VERSION of a critic template (default: ours, v1)")
        parser.add_argument("--retries", type=int, default=2, help="extra attempts for an unparseable reply")
        parser.add_argument("--wait", action="store_true")
        parser.add_argument("--timeout", type=float, default=None)

    def handle(self, *args, **o) -> None:
        critic = ModelEndpoint.objects.filter(name=o["critic"]).first()
        if critic is None:
            raise CommandError(f"No endpoint named {o['critic']!r}.")
        runs = list(InferenceRun.objects.filter(pk__in=o["run"]))
        if len(runs) != len(set(o["run"])):
            raise CommandError(f"Unknown inference run among {o['run']}.")
        if o["template"]:
            name, _, version = o["template"].partition(":")
            template = PromptTemplate.objects.filter(kind="critic", name=name, version=int(version or 1)).first()
            if template is None:
                raise CommandError(f"No critic template {o['template']!r}.")
        else:
            template = critics.critic_template_default()
        try:
            run = critics.critic_run_create(critic=critic, template=template, inference_runs=runs,
                                             max_retries=o["retries"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"critic_run_id={run.pk}")
        self.stdout.flush()
        if not o["wait"]:
            return
        wait_and_report(self, run, timeout=o["timeout"],
                        summary=lambda r: f"scored={r.done} unparsed={r.unparsed} failed={r.failed}")
