from annotation import scoring
from annotation.models import HumanScore
from evaluation.models import Response
from tests.factories import (
    make_dataset,
    make_endpoint,
    make_question,
    make_response,
    make_run,
    make_scoring_dataset,
    make_user,
)


def test_it_keeps_each_responses_human_count_and_sum_in_step(db, annotator):
    dataset = make_dataset()
    response = make_response(run=make_run(endpoint=make_endpoint(), dataset=dataset),
                             question=make_question(dataset=dataset))
    other = make_user(username="otto", role="annotator")
    first = HumanScore.objects.create(response=response, annotator=annotator, score=6)
    HumanScore.objects.create(response=response, annotator=other, score=9)
    response.refresh_from_db()
    assert (response.human_count, response.human_sum) == (2, 15)
    first.revise(score=2, rationale="missed the joke", flags=[], by=annotator)
    response.refresh_from_db()
    assert (response.human_count, response.human_sum) == (2, 11)
    first.delete()
    response.refresh_from_db()
    assert (response.human_count, response.human_sum) == (1, 9)


def test_it_recounts_after_a_bulk_load(db, annotator):
    dataset = make_dataset()
    response = make_response(run=make_run(endpoint=make_endpoint(), dataset=dataset),
                             question=make_question(dataset=dataset))
    HumanScore.objects.bulk_create([HumanScore(response=response, annotator=annotator, score=7)])
    assert Response.objects.get().human_count == 0, "bulk_create skips signals"
    assert Response.objects.all().refresh_human_stats() == 1
    assert (Response.objects.get().human_count, Response.objects.get().human_sum) == (1, 7)


def test_a_submit_and_a_delete_recount_through_the_same_function_on_either_database(db):
    # (CI runs this file on SQLite and on PostgreSQL: both take the same ORM path.)
    dataset, _ = make_scoring_dataset(questions=1, models=1, tasks=("OCR",), annotators_per_response=2)
    scoring.queue_sync(dataset)
    submitted = []
    for name, value in (("ann", 4), ("bea", 9)):
        assignment = scoring.assignment_reserve_next(user=make_user(username=name, role="annotator"), dataset=dataset)
        submitted.append(scoring.score_submit(assignment=assignment, data=scoring.ScoreInput(value, "why", []),
                                              time_spent_s=3))
    response = Response.objects.get()
    assert (response.human_count, response.human_sum) == (2, 13)
    HumanScore.objects.get(pk=submitted[0].pk).delete()
    response.refresh_from_db()
    assert (response.human_count, response.human_sum) == (1, 9)
