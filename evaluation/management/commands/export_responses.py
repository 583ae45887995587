from django.core.management.base import BaseCommand, CommandError

from evaluation import exchange
from evaluation.management.files import write_whole
from evaluation.models import InferenceRun


class Command(BaseCommand):
    help = 'Write a run\'s answers as official JSONL: {"question_id": ..., "predict": ...} per line.'

    def add_arguments(self, parser) -> None:
        parser.add_argument("--run", type=int, required=True)
        parser.add_argument("--out", required=True)

    def handle(self, *args, **o) -> None:
        run = InferenceRun.objects.filter(pk=o["run"]).first()
        if run is None:
            raise CommandError(f"No inference run {o['run']}.")
        count = write_whole(o["out"], lambda out: exchange.responses_export(run=run, out=out))
        self.stdout.write(f"exported={count} (failed answers are left out) -> {o['out']}")
