import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Dataset
from evaluation.pairs import pointwise_votes
from evaluation.ratings import RatingsError, compute_ratings, read_arena_jsonl


class Command(BaseCommand):
    help = ("Bradley-Terry ratings (Elo scale, mean 1000) with bootstrap 95% intervals from pairwise votes: an "
            "arena battle JSONL file, or a dataset's pointwise scores read as pairs.")

    def add_arguments(self, parser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--votes", help='Arena battle JSONL: {"question_id", "model_a", '
                            '"model_b", "winner": "model_a"|"model_b"|"tie"|"tie (bothbad)", "judge"} per line.')
        source.add_argument("--dataset", help="Dataset name; its scores are read as pairs (needs --source).")
        parser.add_argument("--source", help="With --dataset: critic-run:ID or human-scores. On each question "
                            "the higher score wins, equal scores tie.")
        parser.add_argument("--bootstrap", type=int, default=1000, help="Resamples for the intervals (0: none).")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the bootstrap.")
        parser.add_argument("--length-controlled", action="store_true",
                            help="Answer-length difference as a covariate (needs length_a/length_b on each line).")
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args, **o) -> None:
        try:
            ratings = compute_ratings(self._votes(o), bootstrap=o["bootstrap"], seed=o["seed"],
                                      length_controlled=o["length_controlled"])
        except RatingsError as error:
            raise CommandError(str(error)) from None
        if o["json"]:
            self.stdout.write(json.dumps(ratings.as_dict(), ensure_ascii=False, indent=2))
            return
        self.stdout.write("rank\tmodel\trating\t95% interval\tvotes")
        for m in ratings.models:
            interval = "" if m.lower is None else f"[{m.lower:.0f}, {m.upper:.0f}]"
            self.stdout.write(f"{m.rank}\t{m.model}\t{m.rating:.0f}\t{interval}\t{m.votes}")
        for warning in ratings.warnings:
            self.stderr.write(warning)

    def _votes(self, o: dict) -> list:
        if o["dataset"] is not None:
            dataset = Dataset.objects.filter(name=o["dataset"]).first()
            if dataset is None:
                raise CommandError(f"No dataset named {o['dataset']!r}.")
            if not o["source"]:
                raise CommandError("--dataset needs --source critic-run:ID or human-scores.")
            return pointwise_votes(dataset=dataset, source=o["source"])
        path = Path(o["votes"])
        if not path.is_file():
            raise CommandError(f"No file {path}.")
        try:
            with path.open(encoding="utf-8") as lines:
                return read_arena_jsonl(lines)
        except (RatingsError, UnicodeDecodeError) as error:
            raise CommandError(f"{path}: {error}") from None
