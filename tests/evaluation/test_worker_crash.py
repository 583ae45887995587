"""SIGKILL a worker in the middle of a run; a new worker finishes it with one row per item."""

import json
import os
import signal

import pytest

from evaluation import critics, inference
from evaluation.models import CriticRun, CriticScore, InferenceRun, Response
from tests.chat_server import ChatServer
from tests.conftest import ARTIFACTS
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run
from tests.workers import purge_broker, start_worker, stop_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
ITEMS = 60


def inference_run(server):
    dataset = make_dataset()
    for i in range(ITEMS):
        make_question(dataset=dataset, group=f"0000{i:04d}", text=f"问题{i}")
    endpoint = make_endpoint(base_url=server.base_url, concurrency=1)  # 16 a batch, stored as they arrive
    return inference.inference_run_create(endpoint=endpoint, dataset=dataset), InferenceRun, Response.objects


def critic_run(server):
    dataset = make_dataset()
    run = make_run(endpoint=make_endpoint(), dataset=dataset, status="done")
    for i in range(ITEMS):
        make_response(run=run, question=make_question(dataset=dataset, group=f"0000{i:04d}"), text=f"回答{i}")
    critic = make_endpoint(name="judge", role="critic", base_url=server.base_url, concurrency=1)
    created = critics.critic_run_create(critic=critic, template=critics.critic_template_default(),
                                         inference_runs=[run])
    return created, CriticRun, CriticScore.objects


@pytest.mark.parametrize("create", [inference_run, critic_run], ids=["inference", "critic"])
def test_it_finishes_a_run_after_its_worker_is_killed(media_root, create):
    purge_broker()
    ARTIFACTS.mkdir(exist_ok=True)
    with ChatServer(reply=lambda m, r: json.dumps({"Rating": 6, "Reason": "可以"}), latency_s=0.1) as server:
        first = start_worker(name="doomed", log_path=ARTIFACTS / "worker-doomed.log", MEDIA_ROOT=str(media_root))
        second = None
        try:
            run, model, rows = create(server)
            wait_for(lambda: rows.count() >= 16, timeout=60, what="the first answers")
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            assert rows.count() < ITEMS, "the run must still have work left when the worker dies"
            assert model.objects.get(pk=run.pk).status == "running"

            second = start_worker(name="rescuer", log_path=ARTIFACTS / "worker-rescuer.log",
                                  MEDIA_ROOT=str(media_root))
            run = wait_for(lambda: model.objects.filter(pk=run.pk, status="done").first(), timeout=90,
                           what="the rescuer to finish the run")
        finally:
            if first.poll() is None:
                first.kill()
            if second is not None:
                stop_worker(second)
    assert (run.done, run.failed, run.total) == (ITEMS, 0, ITEMS)
    assert rows.count() == ITEMS, "none lost, none doubled"
