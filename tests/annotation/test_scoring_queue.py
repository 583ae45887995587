"""The scoring queue as a service: overlap, no duplicates, reservations, orders, submit rules, edits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.http import QueryDict
from django.utils import timezone

from annotation import scoring
from annotation.models import Assignment, HumanScore, ScoringItem
from annotation.scoring import Order, ScoreInput, ScoringError
from evaluation.models import Response
from tests.factories import make_critic_run, make_critic_score, make_scoring_dataset, make_user

pytestmark = pytest.mark.django_db


def _score(user, dataset, value=7, order=Order.BALANCED):
    assignment = scoring.assignment_reserve_next(user=user, dataset=dataset, order=order)
    assert assignment is not None
    scoring.score_submit(assignment=assignment, data=ScoreInput(value, "ok", []), time_spent_s=3)
    return assignment


def test_it_syncs_scorable_responses_once_and_leaves_out_errors():
    dataset, responses = make_scoring_dataset(questions=2, models=2, failed=1)
    assert scoring.queue_sync(dataset) == len(responses)
    assert scoring.queue_sync(dataset) == 0
    assert set(ScoringItem.objects.values_list("pk", flat=True)) == {r.pk for r in responses}
    assert not ScoringItem.objects.filter(response__error__gt="").exists()


def test_it_gives_each_response_to_at_most_n_annotators_and_nobody_twice():
    dataset, responses = make_scoring_dataset(questions=1, models=2, tasks=("Description",), annotators_per_response=2)
    scoring.queue_sync(dataset)
    people = [make_user(username=f"a{i}", role="annotator") for i in range(5)]
    for person in people:
        while (assignment := scoring.assignment_reserve_next(user=person, dataset=dataset)) is not None:
            scoring.score_submit(assignment=assignment, data=ScoreInput(5, "", []), time_spent_s=1)
    counts = {r.pk: HumanScore.objects.filter(response=r).count() for r in responses}
    assert counts == {r.pk: 2 for r in responses}
    assert ScoringItem.objects.filter(full=True).count() == len(responses)
    assert scoring.assignment_reserve_next(user=people[-1], dataset=dataset) is None


def test_it_records_a_submit_everywhere_it_counts():
    dataset, responses = make_scoring_dataset(questions=1, models=1, tasks=("Description",), annotators_per_response=2)
    scoring.queue_sync(dataset)
    anna, bob = make_user(username="anna", role="annotator"), make_user(username="bob", role="annotator")
    held = scoring.assignment_reserve_next(user=anna, dataset=dataset)
    returned = scoring.score_submit(assignment=held, data=ScoreInput(3, "too short", ["response_cut_off"]),
                                    time_spent_s=-2)
    saved = HumanScore.objects.get(annotator=anna)
    assert (returned.pk, returned.score, returned.flags) == (saved.pk, 3, ["response_cut_off"])
    assert (saved.rationale, saved.time_spent_s, saved.response_id) == ("too short", 0.0, responses[0].pk)
    held.refresh_from_db()
    assert held.status == Assignment.Status.SUBMITTED
    item = ScoringItem.objects.get()
    assert (item.scores, item.full) == (1, False)
    _score(bob, dataset, value=8)
    item.refresh_from_db()
    assert (item.scores, item.full) == (2, True)
    response = Response.objects.get(pk=responses[0].pk)
    assert (response.human_count, response.human_sum) == (2, 11)


def test_it_resumes_the_live_reservation_instead_of_taking_another():
    dataset, _ = make_scoring_dataset()
    scoring.queue_sync(dataset)
    anna = make_user(username="anna", role="annotator")
    first = scoring.assignment_reserve_next(user=anna, dataset=dataset)
    assert scoring.assignment_reserve_next(user=anna, dataset=dataset) == first
    assert Assignment.objects.filter(annotator=anna).count() == 1


def test_it_counts_live_reservations_against_the_limit_and_reclaims_expired_ones():
    dataset, responses = make_scoring_dataset(questions=1, models=1, tasks=("Description",), annotators_per_response=1)
    scoring.queue_sync(dataset)
    anna, bob = make_user(username="anna", role="annotator"), make_user(username="bob", role="annotator")
    held = scoring.assignment_reserve_next(user=anna, dataset=dataset)
    assert scoring.assignment_reserve_next(user=bob, dataset=dataset) is None
    Assignment.objects.filter(pk=held.pk).update(reserved_until=timezone.now() - timedelta(seconds=1))
    given = scoring.assignment_reserve_next(user=bob, dataset=dataset)
    assert given is not None and given.response_id == held.response_id == responses[0].pk
    held.refresh_from_db()
    assert held.status == Assignment.Status.EXPIRED
    with pytest.raises(ScoringError, match="expired"):
        scoring.score_submit(assignment=held, data=ScoreInput(5, "", []), time_spent_s=1)
    scoring.score_submit(assignment=given, data=ScoreInput(5, "", []), time_spent_s=1)
    assert HumanScore.objects.filter(response=responses[0]).count() == 1


def test_it_accepts_a_late_submit_when_nobody_took_the_place():
    dataset, _ = make_scoring_dataset(annotators_per_response=1)
    scoring.queue_sync(dataset)
    anna = make_user(username="anna", role="annotator")
    held = scoring.assignment_reserve_next(user=anna, dataset=dataset)
    Assignment.objects.filter(pk=held.pk).update(reserved_until=timezone.now() - timedelta(minutes=1))
    scoring.score_submit(assignment=held, data=ScoreInput(8, "", []), time_spent_s=1)
    assert HumanScore.objects.get(annotator=anna).score == 8


def test_it_refuses_a_second_submit_and_a_submit_after_skip():
    dataset, _ = make_scoring_dataset()
    scoring.queue_sync(dataset)
    anna = make_user(username="anna", role="annotator")
    done = _score(anna, dataset)
    with pytest.raises(ScoringError):
        scoring.score_submit(assignment=done, data=ScoreInput(3, "x", []), time_spent_s=1)
    skipped = scoring.assignment_reserve_next(user=anna, dataset=dataset)
    assert scoring.assignment_skip(assignment=skipped)
    with pytest.raises(ScoringError):
        scoring.score_submit(assignment=skipped, data=ScoreInput(3, "x", []), time_spent_s=1)
    assert scoring.assignment_reserve_next(user=anna, dataset=dataset).response_id not in {
        done.response_id, skipped.response_id}


def test_it_interleaves_tasks_and_models_in_balanced_order():
    dataset, _ = make_scoring_dataset(questions=3, models=2, tasks=("Description", "OCR", "Chart"),
                                      annotators_per_response=1)
    scoring.queue_sync(dataset)
    anna = make_user(username="anna", role="annotator")
    first_six = [Response.objects.select_related("question").get(pk=_score(anna, dataset).response_id)
                 for _ in range(6)]
    assert {(r.question.task, r.run_id) for r in first_six} == {
        (t, run) for t in ("Description", "OCR", "Chart") for run in {r.run_id for r in first_six}}


def test_it_puts_unparsed_and_disputed_critic_replies_first_when_asked():
    dataset, responses = make_scoring_dataset(questions=3, models=1, tasks=("Description",))
    sure, unsure = make_critic_run(name="c1"), make_critic_run(name="c2")
    for r in responses:
        make_critic_score(critic_run=sure, response=r, score=7)
    make_critic_score(critic_run=unsure, response=responses[2], score=None, status="unparsed")
    make_critic_score(critic_run=unsure, response=responses[1], score=2)  # a gap of 5 between critics
    scoring.queue_sync(dataset)
    anna = make_user(username="anna", role="annotator")
    order = [_score(anna, dataset, order=Order.DOUBT).response_id for _ in range(3)]
    assert order == [responses[2].pk, responses[1].pk, responses[0].pk]


def test_it_serves_everything_in_random_order_too():
    dataset, responses = make_scoring_dataset(questions=4, models=1, annotators_per_response=1)
    scoring.queue_sync(dataset)
    anna = make_user(username="anna", role="annotator")
    got = {_score(anna, dataset, order=Order.RANDOM).response_id for _ in responses}
    assert got == {r.pk for r in responses}
    assert scoring.assignment_reserve_next(user=anna, dataset=dataset, order=Order.RANDOM) is None


@pytest.mark.parametrize("post,error", [
    ({"score": "11"}, "score"), ({"score": ""}, "score"), ({"score": "2"}, "rationale"),
    ({"score": "7", "flags": ["nonsense"]}, "flags"),
])
def test_it_validates_score_input(post, error):
    data = QueryDict(mutable=True)
    for key, value in post.items():
        data.setlist(key, value if isinstance(value, list) else [value])
    cleaned, errors = scoring.clean_score_input(data)
    assert cleaned is None and error in errors


def test_it_requires_a_rationale_below_the_configured_score(settings):
    settings.SCORING_RATIONALE_BELOW = 6
    assert "rationale" in scoring.clean_score_input(QueryDict("score=5"))[1]
    assert scoring.clean_score_input(QueryDict("score=6"))[1] == {}
    assert scoring.clean_score_input(QueryDict("score=5&rationale=bad&flags=image_unreadable"))[0].flags == [
        "image_unreadable"]


def test_it_keeps_every_edit_within_the_window_and_refuses_later(settings):
    dataset, _ = make_scoring_dataset()
    scoring.queue_sync(dataset)
    anna = make_user(username="anna", role="annotator")
    _score(anna, dataset, value=7)
    human_score = HumanScore.objects.get(annotator=anna)
    scoring.score_edit(human_score=human_score, data=ScoreInput(4, "changed", []), by=anna)
    assert [r.score for r in human_score.revisions.all()] == [7]
    HumanScore.objects.filter(pk=human_score.pk).update(created_at=timezone.now() - timedelta(hours=2))
    human_score.refresh_from_db()
    settings.SCORING_EDIT_WINDOW_MINUTES = 60
    with pytest.raises(ScoringError):
        scoring.score_edit(human_score=human_score, data=ScoreInput(9, "", []), by=anna)


def test_it_lists_disagreements_between_humans_and_with_the_critic(settings):
    dataset, responses = make_scoring_dataset(questions=2, models=1, tasks=("Description",), annotators_per_response=2)
    critic = make_critic_run()
    make_critic_score(critic_run=critic, response=responses[1], score=9)
    a, b = make_user(username="a", role="annotator"), make_user(username="b", role="annotator")
    HumanScore.objects.create(response=responses[0], annotator=a, score=2)
    HumanScore.objects.create(response=responses[0], annotator=b, score=6)   # humans 4 apart
    HumanScore.objects.create(response=responses[1], annotator=a, score=5)
    HumanScore.objects.create(response=responses[1], annotator=b, score=6)   # mean 5.5 vs critic 9
    rows = list(scoring.disagreements(dataset=dataset))
    assert [r["response_id"] for r in rows] == [responses[0].pk, responses[1].pk]
    scoring.adjudication_resolve(response=responses[0], note="humans misread", score=4, by=a)
    assert [r["response_id"] for r in scoring.disagreements(dataset=dataset)] == [responses[1].pk]
    assert [r["response_id"] for r in scoring.disagreements(dataset=dataset, resolved=True)] == [responses[0].pk]


def test_it_reports_progress_per_count_and_per_annotator():
    dataset, responses = make_scoring_dataset(questions=2, models=1, tasks=("Description",), annotators_per_response=2)
    scoring.queue_sync(dataset)
    anna, bob = make_user(username="anna", role="annotator"), make_user(username="bob", role="annotator")
    _score(anna, dataset), _score(bob, dataset), _score(anna, dataset)
    progress = scoring.dataset_progress(dataset)
    assert progress["histogram"] == [(0, 0), (1, 1), (2, 1)]
    assert {a["annotator__username"]: a["total"] for a in progress["annotators"]} == {"anna": 2, "bob": 1}
    assert scoring.annotator_counts(user=anna) == {"total": 2, "today": 2}
    assert scoring.left_for(user=anna, dataset=dataset) == 0
    assert scoring.left_for(user=bob, dataset=dataset) == 1
