import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from evaluation import analysis


class Command(BaseCommand):
    help = "Models x the 13 tasks, category and overall means, and the alignment score, for one dataset."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True, help="Dataset name.")
        parser.add_argument("--source", choices=analysis.SOURCES, default="critic",
                            help="critic: the newest critic run over the dataset; human: mean of annotators.")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a Markdown table.")

    def handle(self, *args, **o) -> None:
        dataset = Dataset.objects.filter(name=o["dataset"]).first()
        if dataset is None:
            raise CommandError(f"No dataset named {o['dataset']!r}.")
        board = analysis.leaderboard(dataset=dataset, source=o["source"])
        rows = analysis.leaderboard_sort(board.rows)
        if o["json"]:
            self.stdout.write(json.dumps({**board.as_dict(), "rows": [r.as_dict() for r in rows]}, ensure_ascii=False,
                                         indent=2))
        else:
            self.stdout.write(analysis.leaderboard_markdown(board, rows))
