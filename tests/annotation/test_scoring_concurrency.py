"""The queue under real concurrency: 20 annotators, each on their own PostgreSQL connection,
asking for "next" and submitting at the same moment, through the views."""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections, transaction
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from annotation import scoring
from annotation.models import Assignment, HumanScore, ScoringItem
from evaluation.models import Response
from tests.factories import make_scoring_dataset, make_user

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="needs PostgreSQL: SQLite has one writer at a time, so there is no row-lock race "
                              "to test (set DATABASE_URL=postgresql://...)"),
]
THREADS = 20
HX = {"HTTP_HX_REQUEST": "true"}


def _annotate_until_empty(user_pk: int, dataset_pk: int, barrier: threading.Barrier, results: dict, errors: list):

    try:
        client = Client()
        client.force_login(User.objects.get(pk=user_pk))
        rng = random.Random(user_pk)
        barrier.wait(timeout=30)
        submitted = []
        for _ in range(200):
            response = client.post(f"/score/{dataset_pk}/next", **HX)
            assert response.status_code == 200, response.status_code
            found = re.search(r"score/item/(\d+)/submit", response.content.decode())
            if found is None:
                assert 'data-testid="queue-empty"' in response.content.decode()
                break
            pk = int(found.group(1))
            response = client.post(f"/score/item/{pk}/submit", {"score": str(rng.randint(4, 10))}, **HX)
            assert response.status_code == 200 and 'data-testid="side-by-side"' in response.content.decode()
            submitted.append(Assignment.objects.get(pk=pk).response_id)
        results[user_pk] = submitted
    except Exception as exc:  # collected and re-raised in the test's thread
        errors.append(repr(exc))
    finally:
        connections.close_all()


def test_it_never_overfills_duplicates_or_loses_a_score_with_20_threads(settings):
    n = 3
    dataset, responses = make_scoring_dataset(questions=10, models=2, tasks=("Description", "OCR"),
                                              annotators_per_response=n)
    scoring.queue_sync(dataset)
    users = [make_user(username=f"t{i}", role="annotator") for i in range(THREADS)]
    barrier, results, errors = threading.Barrier(THREADS), {}, []
    threads = [threading.Thread(target=_annotate_until_empty, args=(u.pk, dataset.pk, barrier, results, errors))
               for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(results) == THREADS
    per_response = Counter(HumanScore.objects.values_list("response_id", flat=True))
    # Nobody twice (also a constraint), never more than N, and with 20 people nothing is left short.
    pairs = list(HumanScore.objects.values_list("response_id", "annotator_id"))
    assert len(pairs) == len(set(pairs))
    assert per_response == {r.pk: n for r in responses}
    # Nothing lost: every submit the views confirmed is a row, and every row was confirmed once.
    confirmed = Counter((rid, uid) for uid, rids in results.items() for rid in rids)
    assert confirmed == Counter(pairs)
    assert sum(len(v) for v in results.values()) == len(responses) * n
    assert set(ScoringItem.objects.values_list("scores", "full")) == {(n, True)}
    assert not Assignment.objects.filter(status=Assignment.Status.RESERVED).exists()
    # Each response's kept count and sum equal its rows, though its scores came in at once.
    sums = dict(HumanScore.objects.values("response_id").annotate(s=Sum("score")).values_list("response_id", "s"))
    assert {r.pk: (r.human_count, r.human_sum) for r in Response.objects.all()} == {
        rid: (n, sums[rid]) for rid in per_response}


def test_it_counts_both_of_two_edits_made_at_once_to_one_responses_scores():
    # Without the response row locked before the recount, the second UPDATE's snapshot can miss the
    # first edit: a race, so several rounds.
    dataset, responses = make_scoring_dataset(questions=1, models=1)
    users = [make_user(username=f"e{i}", role="annotator") for i in range(2)]
    scores = [HumanScore.objects.create(response=responses[0], annotator=u, score=5) for u in users]
    errors = []

    def edit(barrier: threading.Barrier, score: HumanScore, user_pk: int, value: int) -> None:
        try:
            barrier.wait(timeout=30)
            with transaction.atomic():
                score.revise(score=value, rationale="", flags=[], by=User(pk=user_pk))
        except Exception as exc:  # collected and re-raised in the test's thread
            errors.append(repr(exc))
        finally:
            connections.close_all()

    for first in range(1, 9):
        barrier, values = threading.Barrier(2), (first, 10 - first)
        threads = [threading.Thread(target=edit, args=(barrier, s, u.pk, v))
                   for s, u, v in zip(scores, users, values, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        response = Response.objects.get(pk=responses[0].pk)
        assert (response.human_count, response.human_sum) == (2, 10), f"round {first}"


def test_it_gives_an_expired_reservation_to_someone_else():
    dataset, responses = make_scoring_dataset(questions=1, models=1, tasks=("Description",), annotators_per_response=1)
    scoring.queue_sync(dataset)
    anna, bob = make_user(username="anna", role="annotator"), make_user(username="bob", role="annotator")
    held = scoring.assignment_reserve_next(user=anna, dataset=dataset)
    got: dict = {}

    def ask():
        try:
            got["bob"] = scoring.assignment_reserve_next(user=bob, dataset=dataset)
        finally:
            connections.close_all()

    thread = threading.Thread(target=ask)
    thread.start()
    thread.join()
    assert got["bob"] is None  # still anna's
    Assignment.objects.filter(pk=held.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    thread = threading.Thread(target=ask)
    thread.start()
    thread.join()
    assert got["bob"].response_id == responses[0].pk
    with pytest.raises(scoring.ScoringError):
        scoring.score_submit(assignment=held, data=scoring.ScoreInput(5, "", []), time_spent_s=1)
    scoring.score_submit(assignment=got["bob"], data=scoring.ScoreInput(6, "", []), time_spent_s=1)
    assert list(HumanScore.objects.values_list("annotator__username", flat=True)) == ["bob"]
