"""Pairwise votes from pointwise scores: on each question, the higher-scored response wins, equal scores tie.

So every critic run (and the human scores) gets a Bradley-Terry ranking with intervals at once, from the same
votes format as arena battles (evaluation.ratings).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

from django.db.models.functions import Length

from annotation.models import Dataset

from .analysis import run_labels
from .models import CriticRun, CriticScore, Response
from .ratings import RatingsError, Vote

HUMAN_SCORES = "human-scores"


def parse_source(text: str) -> tuple[str, int | None]:
    """("human-scores", None) or ("critic-run", id); RatingsError for anything else."""
    if text == HUMAN_SCORES:
        return HUMAN_SCORES, None
    kind, _, number = text.partition(":")
    if kind == "critic-run" and number.isdigit():
        return kind, int(number)
    raise RatingsError(f"unknown source {text!r}: use human-scores or critic-run:ID")


def pointwise_votes(*, dataset: Dataset, source: str) -> list[Vote]:
    """Votes between every two inference runs of the dataset on each question both were scored on.

    critic-run:ID uses that critic run's parsed scores; human-scores the mean of the annotators' scores. The vote
    carries the answers' lengths in characters, for the length-controlled ratings.
    """
    kind, pk = parse_source(source)
    if kind == HUMAN_SCORES:
        rows = (Response.objects.filter(run__dataset=dataset, human_count__gt=0)
                .annotate(length=Length("text"))
                .values_list("question_id", "run_id", "human_sum", "human_count", "length"))
        rows = [(question, run_id, total / count, length) for question, run_id, total, count, length in rows]
        judge = "humans (mean score)"
    else:
        run = CriticRun.objects.filter(pk=pk).select_related("critic").first()
        if run is None:
            raise RatingsError(f"no critic run {pk}")
        rows = (CriticScore.objects.filter(critic_run=run, score__isnull=False, response__run__dataset=dataset)
                .annotate(length=Length("response__text"))
                .values_list("response__question_id", "response__run_id", "score", "length"))
        judge = run.label
    by_question: dict[int, list[tuple[int, float, int]]] = defaultdict(list)
    for question, run_id, score, length in rows:
        by_question[question].append((run_id, float(score), int(length or 0)))
    labels = run_labels({run_id for scored in by_question.values() for run_id, _, _ in scored})
    votes = []
    for question, scored in sorted(by_question.items()):
        for (run_a, score_a, len_a), (run_b, score_b, len_b) in combinations(sorted(scored), 2):
            winner = "model_a" if score_a > score_b else "model_b" if score_b > score_a else "tie"
            votes.append(Vote(labels[run_a], labels[run_b], winner, str(question), judge, float(len_a),
                              float(len_b)))
    if not votes:
        raise RatingsError(f"no question of dataset {dataset.name!r} has scores from two or more inference runs "
                           f"in {source}")
    return votes
