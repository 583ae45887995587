"""Who holds a run: claim tokens, endpoint edits between stop and resume, speed after a resume."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from evaluation import inference, runs
from evaluation.models import InferenceRun
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    dataset = make_dataset()
    for i in range(3):
        make_question(dataset=dataset, group=f"0000{i:04d}", text=f"问题{i}")
    endpoint = make_endpoint(model_name="model-A")
    return make_run(endpoint=endpoint, dataset=dataset, total=3, params=endpoint.generation_params())


def test_a_later_claim_takes_the_run_from_the_earlier_task(run):
    first = InferenceRun.objects.get(pk=run.pk)
    assert first.claim("worker-1") and first.holds_claim()
    # Cancel, then resume while the first task is still in its batch: the resumed task claims the run
    # on the same worker, and the first task must notice it is no longer its to work on.
    assert first.cancel() and not first.holds_claim()
    assert InferenceRun.objects.get(pk=run.pk).requeue()
    second = InferenceRun.objects.get(pk=run.pk)
    assert second.claim("worker-1") and second.holds_claim()
    assert second.claim_token != first.claim_token
    assert not first.holds_claim()
    # The first task's finish (or failure) can't end the run the second one is working on.
    first.finish(error="boom")
    second.refresh_from_db()
    assert (second.status, second.error) == ("running", "")
    second.finish()
    assert second.status == "done"


def test_a_redelivered_task_takes_over_from_a_stuck_one_on_the_same_worker(run):
    first = InferenceRun.objects.get(pk=run.pk)
    assert first.claim("worker-1")
    again = InferenceRun.objects.get(pk=run.pk)
    assert again.claim("worker-1")
    assert again.holds_claim() and not first.holds_claim()


def test_a_live_other_worker_keeps_its_run(run):
    from evaluation.models import Worker

    Worker.objects.create(name="worker-2", hostname="h", pid=1, queues=["default"], started_at=timezone.now(),
                          last_seen=timezone.now())
    held = InferenceRun.objects.get(pk=run.pk)
    assert held.claim("worker-2")
    assert not InferenceRun.objects.get(pk=run.pk).claim("worker-1")
    assert held.holds_claim()


def test_resume_is_refused_when_the_endpoint_changed_what_it_answers_with(run):
    run.cancel()
    endpoint = run.endpoint
    endpoint.model_name, endpoint.temperature = "model-B", 0.7
    endpoint.save()
    with pytest.raises(ValueError, match=r"model_name: 'model-A' -> 'model-B'; temperature: 0.0 -> 0.7"):
        runs.run_resume(run=InferenceRun.objects.get(pk=run.pk))
    assert InferenceRun.objects.get(pk=run.pk).status == "cancelled"


def test_resume_is_allowed_when_only_where_or_how_fast_changed(run):
    run.cancel()
    endpoint = run.endpoint
    endpoint.base_url, endpoint.concurrency, endpoint.batch_size = "http://127.0.0.1:1/v1", 32, 4
    endpoint.save()
    assert runs.run_resume(run=InferenceRun.objects.get(pk=run.pk))
    assert InferenceRun.objects.get(pk=run.pk).status == "queued"


def test_retrying_failed_items_keeps_them_when_the_endpoint_changed(run):
    run.cancel()
    question = run.dataset.questions.first()
    make_response(run=run, question=question, text="", error="HTTP 500")
    run.endpoint.max_new_tokens = 16
    run.endpoint.save()
    with pytest.raises(ValueError, match="max_new_tokens"):
        inference.inference_run_retry_failed(run=InferenceRun.objects.get(pk=run.pk))
    assert run.responses.filter(question=question, error="HTTP 500").exists()


def test_a_queued_run_whose_endpoint_changed_fails_with_the_reason_instead_of_mixing_answers(run):
    run.endpoint.model_name = "model-B"
    run.endpoint.save()
    inference.inference_run_work(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "model_name: 'model-A' -> 'model-B'" in run.error
    assert run.responses.count() == 0


def test_the_run_page_says_why_resume_was_refused(client, researcher, run):
    run.cancel()
    run.endpoint.model_name = "model-B"
    run.endpoint.save()
    client.force_login(researcher)
    page = client.post(reverse("evaluation:run_resume", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert page.status_code == 200
    assert "changed since this run started" in page.content.decode()
    assert InferenceRun.objects.get(pk=run.pk).status == "cancelled"


def test_speed_after_a_resume_counts_from_the_resume(run):
    long_ago = timezone.now() - timedelta(hours=3)
    InferenceRun.objects.filter(pk=run.pk).update(status="cancelled", started_at=long_ago, done=2)
    run.refresh_from_db()
    assert run.requeue() and run.claim("worker-1")
    assert run.started_at == long_ago and run.processed_before == 2
    assert run.items_per_second() is None  # nothing new yet, rather than 2 items over three hours
    InferenceRun.objects.filter(pk=run.pk).update(done=3, resumed_at=timezone.now() - timedelta(seconds=2))
    run.refresh_from_db()
    assert 0.4 < run.items_per_second() <= 0.5
