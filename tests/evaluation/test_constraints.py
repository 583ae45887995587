import pytest
from django.db import IntegrityError, transaction

from evaluation.models import CriticRun, ModelEndpoint, PromptTemplate, Response
from tests.factories import (
    make_critic_score,
    make_dataset,
    make_endpoint,
    make_question,
    make_response,
    make_run,
)


@pytest.fixture
def response(db):
    dataset = make_dataset()
    run = make_run(endpoint=make_endpoint(), dataset=dataset)
    return make_response(run=run, question=make_question(dataset=dataset))


def test_it_rejects_a_second_response_for_the_same_run_and_question(response):
    with pytest.raises(IntegrityError), transaction.atomic():
        Response.objects.create(run=response.run, question=response.question, text="again")


def test_it_rejects_a_second_critic_score_for_the_same_response(response):
    critic_run = CriticRun.objects.create(name="c")
    make_critic_score(critic_run=critic_run, response=response)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_critic_score(critic_run=critic_run, response=response)


@pytest.mark.parametrize("fields", [
    {"score": 0}, {"score": 11}, {"score": None, "status": "parsed"}, {"score": 5, "status": "unparsed"},
    {"score": 5, "expected_score": 10.5}, {"score": 5, "expected_score": 0.9},
])
def test_it_rejects_impossible_critic_scores(response, fields):
    critic_run = CriticRun.objects.create(name="c")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_critic_score(critic_run=critic_run, response=response, **fields)


def test_it_stores_an_unparsed_reply_without_a_score(response):
    critic_run = CriticRun.objects.create(name="c")
    row = make_critic_score(critic_run=critic_run, response=response, score=None, status="unparsed",
                            raw_output="I think it is fine.")
    assert row.score is None


@pytest.mark.parametrize("fields", [
    {"backend": "transformers", "model_path": ""},
    {"backend": "openai", "base_url": ""},
    {"temperature": -0.1}, {"top_p": 0}, {"batch_size": 0}, {"role": "judge"},
])
def test_it_rejects_impossible_endpoints(db, fields):
    values = {"name": "e", "role": "vlm", "backend": "openai", "base_url": "http://x/v1", "model_name": "m", **fields}
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelEndpoint.objects.create(**values)


def test_it_rejects_a_duplicate_template_version(db):
    PromptTemplate.objects.create(kind="critic", name="default", version=1, body="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        PromptTemplate.objects.create(kind="critic", name="default", version=1, body="y")


def test_it_revises_a_template_as_a_new_version(db, researcher):
    first = PromptTemplate.objects.create(kind="critic", name="default", version=1, body="v1")
    second = first.revise(body="v2", by=researcher)
    first.refresh_from_db()
    assert (first.body, second.version, second.body) == ("v1", 2, "v2")


def test_it_moves_runs_through_their_states(db):
    run = make_run(endpoint=make_endpoint(), dataset=make_dataset())
    assert run.status == "queued"
    assert run.claim("w1") and run.status == "running"
    assert not run.requeue(), "an active run can't be re-queued"
    assert run.cancel() and run.status == "cancelled"
    assert not run.cancel(), "cancelling twice does nothing"
    assert run.requeue() and run.status == "queued"
    assert run.claim("w1")
    run.finish()
    assert run.status == "done" and run.finished_at is not None


def test_it_does_not_let_a_second_live_worker_take_a_running_run(db):
    from datetime import timedelta

    from django.utils import timezone

    from evaluation.models import Worker

    now = timezone.now()
    Worker.objects.create(name="w1", hostname="h", pid=1, queues=["default"], started_at=now, last_seen=now)
    run = make_run(endpoint=make_endpoint(), dataset=make_dataset())
    assert run.claim("w1")
    assert not run.claim("w2")
    Worker.objects.filter(name="w1").update(last_seen=now - timedelta(hours=1))
    assert run.claim("w2"), "a dead worker's run is handed on"
