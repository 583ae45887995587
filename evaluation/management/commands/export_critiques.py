from django.core.management.base import BaseCommand, CommandError

from evaluation import exchange
from evaluation.management.files import write_whole
from evaluation.models import CriticRun


class Command(BaseCommand):
    help = "Write a critic run in the released runner's JSONL (question_id, Rating, Reason; Rating null if unparsed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--critic-run", type=int, required=True)
        parser.add_argument("--out", required=True)

    def handle(self, *args, **o) -> None:
        run = CriticRun.objects.filter(pk=o["critic_run"]).first()
        if run is None:
            raise CommandError(f"No critic run {o['critic_run']}.")
        count = write_whole(o["out"], lambda out: exchange.critiques_export(run=run, out=out))
        self.stdout.write(f"exported={count} -> {o['out']}")
