"""Inference runs through a real Celery worker against a local Chat Completions server."""

import io
import json
import time

import pytest
from django.core.management import call_command

from evaluation import inference, runs, workers
from evaluation.models import InferenceRun, Response
from tests.chat_server import ChatServer
from tests.factories import make_dataset, make_endpoint, make_question
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chat_server():
    with ChatServer() as server:
        yield server


def make_questions(dataset, count: int, *, dialogue_every: int = 0):
    questions = []
    for i in range(count):
        if dialogue_every and i % dialogue_every == 0:
            questions.append(make_question(dataset=dataset, task="Coherence", group=f"0011{i:04d}", text=f"问题{i}",
                                           history=[{"user": "这是什么？", "assistant": "一张图。"}]))
        else:
            questions.append(make_question(dataset=dataset, group=f"0000{i:04d}", text=f"问题{i}"))
    return questions


def finished(run: InferenceRun, timeout: float = 60) -> InferenceRun:
    return wait_for(lambda: InferenceRun.objects.filter(pk=run.pk).exclude(status__in=["queued", "running"]).first(),
                    timeout=timeout, what=f"run {run.pk} to stop")


def test_it_answers_every_question_once(celery_worker, chat_server):
    dataset = make_dataset()
    questions = make_questions(dataset, 12, dialogue_every=4)
    endpoint = make_endpoint(base_url=chat_server.base_url, concurrency=4, max_retries=3)
    run = finished(inference.inference_run_create(endpoint=endpoint, dataset=dataset))
    assert (run.status, run.done, run.failed, run.total) == ("done", 12, 0, 12)
    answers = {r.question_id: r.text for r in Response.objects.filter(run=run)}
    assert set(answers) == {q.pk for q in questions}
    assert all(text for text in answers.values())


def test_it_retries_transient_failures_and_records_permanent_ones(celery_worker, chat_server):
    dataset = make_dataset()
    questions = make_questions(dataset, 10)
    chat_server.fail_next(1, "429")
    chat_server.fail_next(1, "500")
    chat_server.fail_next(1, "drop")
    chat_server.fail_next(1, "malformed")
    chat_server.fail_when(lambda messages, body: "问题7" in json.dumps(messages, ensure_ascii=False), "400")
    endpoint = make_endpoint(base_url=chat_server.base_url, concurrency=2, max_retries=4)
    run = finished(inference.inference_run_create(endpoint=endpoint, dataset=dataset))
    assert (run.status, run.done, run.failed) == ("done", 9, 1)
    failed = Response.objects.get(run=run, question=questions[7])
    assert "400" in failed.error and failed.text == ""
    assert Response.objects.filter(run=run).count() == 10


def test_it_cancels_between_batches_and_resumes(celery_worker, chat_server):
    dataset = make_dataset()
    make_questions(dataset, 40)
    chat_server.latency_s = 0.15
    endpoint = make_endpoint(base_url=chat_server.base_url, concurrency=1)  # batches of 8
    run = inference.inference_run_create(endpoint=endpoint, dataset=dataset)
    wait_for(lambda: Response.objects.filter(run=run).exists(), timeout=30, what="the first answers")
    assert run.cancel()
    run = finished(run)
    answered = Response.objects.filter(run=run).count()
    assert run.status == "cancelled" and 0 < answered < 40
    chat_server.latency_s = 0
    assert runs.run_resume(run=run)
    run = finished(run)
    assert (run.status, run.done, Response.objects.filter(run=run).count()) == ("done", 40, 40)


def test_it_retries_failed_items_on_request(celery_worker, chat_server):
    dataset = make_dataset()
    questions = make_questions(dataset, 5)
    chat_server.fail_when(lambda messages, body: "问题2" in json.dumps(messages, ensure_ascii=False), "400", times=1)
    endpoint = make_endpoint(base_url=chat_server.base_url, concurrency=2)
    run = finished(inference.inference_run_create(endpoint=endpoint, dataset=dataset))
    assert run.failed == 1
    assert inference.inference_run_retry_failed(run=run) == 1
    run = finished(run)
    assert (run.done, run.failed) == (5, 0)
    assert Response.objects.get(run=run, question=questions[2]).error == ""


def test_it_fails_the_run_with_a_clear_error_when_the_server_is_dead(celery_worker):
    dataset = make_dataset()
    make_questions(dataset, 3)
    endpoint = make_endpoint(base_url="http://127.0.0.1:9/v1", max_retries=1, timeout_s=2)
    run = finished(inference.inference_run_create(endpoint=endpoint, dataset=dataset))
    # A dead endpoint is a per-item error after retries: nothing is silently missing, and the run
    # says it failed rather than "done".
    assert run.done + run.failed == 3 and run.failed == 3
    assert run.status == "failed" and "Every request failed" in run.error
    assert all(r.error for r in Response.objects.filter(run=run))


def test_it_runs_from_the_command_line_and_waits(celery_worker, chat_server):
    dataset = make_dataset(name="cli")
    make_questions(dataset, 6)
    call_command("add_endpoint", "cli-vlm", "--role", "vlm", "--backend", "openai", "--base-url",
                 chat_server.base_url, "--model", "m", "--concurrency", "3", stdout=io.StringIO())
    out = io.StringIO()
    call_command("run_inference", "--endpoint", "cli-vlm", "--dataset", "cli", "--wait", stdout=out,
                 stderr=io.StringIO())
    lines = out.getvalue().strip().splitlines()
    assert lines[0].startswith("run_id=")
    assert lines[-1] == "done=6 failed=0"


def test_it_tests_an_endpoint_on_a_worker(celery_worker, chat_server):
    from evaluation.models import EndpointCheck

    endpoint = make_endpoint(base_url=chat_server.base_url)
    check = workers.endpoint_check_create(endpoint=endpoint)
    check = wait_for(lambda: EndpointCheck.objects.exclude(status="queued").filter(pk=check.pk).first(), timeout=30,
                     what="the endpoint check")
    assert check.status == "done" and check.output.startswith("回答: 图片是什么颜色") and check.latency_s > 0
    dead = make_endpoint(name="dead", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2)
    check = workers.endpoint_check_create(endpoint=dead)
    check = wait_for(lambda: EndpointCheck.objects.exclude(status="queued").filter(pk=check.pk).first(), timeout=30,
                     what="the failing endpoint check")
    assert check.status == "failed" and check.error


def test_cancel_stops_the_requests_of_the_batch_in_progress(celery_worker, chat_server):
    dataset = make_dataset()
    make_questions(dataset, 64)
    chat_server.latency_s = 0.2
    endpoint = make_endpoint(base_url=chat_server.base_url, concurrency=2)  # one batch of 32: 3.2 s of requests
    run = inference.inference_run_create(endpoint=endpoint, dataset=dataset)
    wait_for(lambda: chat_server.requests_received >= 4, timeout=30, what="the first requests")
    assert run.cancel()
    at_cancel = chat_server.requests_received
    time.sleep(1.5)
    settled = chat_server.requests_received
    time.sleep(1.0)
    # Within about a check interval (0.25 s) plus the two requests in flight, not the rest of the batch.
    assert chat_server.requests_received == settled <= at_cancel + 6
    # Every answer that came back was kept; resume does only the rest.
    kept = Response.objects.filter(run=run).count()
    assert kept >= at_cancel - 2
    chat_server.latency_s = 0
    assert runs.run_resume(run=run)
    run = finished(run)
    assert (run.status, run.done, Response.objects.filter(run=run).count()) == ("done", 64, 64)
    assert chat_server.requests_received <= 64 + 4  # the few in flight at the stop are asked again


def test_resume_right_after_cancel_leaves_one_task_answering(celery_worker, chat_server):
    dataset = make_dataset()
    make_questions(dataset, 39)
    chat_server.latency_s = 0.1
    endpoint = make_endpoint(base_url=chat_server.base_url, concurrency=2)
    run = inference.inference_run_create(endpoint=endpoint, dataset=dataset)
    wait_for(lambda: Response.objects.filter(run=run).exists(), timeout=30, what="the first answers")
    assert run.cancel()
    assert runs.run_resume(run=run)  # the cancelled task may still be in its batch
    run = finished(run)
    assert (run.status, run.done, Response.objects.filter(run=run).count()) == ("done", 39, 39)
    # Two tasks answering the same questions side by side would send ~2x39 requests (and pay twice).
    assert chat_server.requests_received <= 39 + 8
