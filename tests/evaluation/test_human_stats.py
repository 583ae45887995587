from annotation.models import HumanScore
from evaluation.models import Response
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run, make_user


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
