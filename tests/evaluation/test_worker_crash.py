"""SIGKILL a worker in the middle of a run; a new worker finishes it with one answer per question."""

import os
import signal

import pytest

from evaluation import services
from evaluation.models import InferenceRun, Response
from tests.chat_server import ChatServer
from tests.conftest import ARTIFACTS
from tests.factories import make_dataset, make_endpoint, make_question
from tests.workers import purge_broker, start_worker, stop_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_it_finishes_a_run_after_its_worker_is_killed(media_root):
    purge_broker()
    dataset = make_dataset()
    for i in range(60):
        make_question(dataset=dataset, group=f"0000{i:04d}", text=f"问题{i}")
    ARTIFACTS.mkdir(exist_ok=True)
    with ChatServer() as server:
        server.latency_s = 0.1
        endpoint = make_endpoint(base_url=server.base_url, concurrency=1)  # 8 a batch, ~1 s each
        first = start_worker(name="doomed", log_path=ARTIFACTS / "worker-doomed.log", MEDIA_ROOT=str(media_root))
        second = None
        try:
            run = services.inference_run_create(endpoint=endpoint, dataset=dataset)
            wait_for(lambda: Response.objects.filter(run=run).count() >= 16, timeout=60, what="two batches")
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
            partial = Response.objects.filter(run=run).count()
            assert partial < 60, "the run must still have work left when the worker dies"
            assert InferenceRun.objects.get(pk=run.pk).status == "running"

            second = start_worker(name="rescuer", log_path=ARTIFACTS / "worker-rescuer.log",
                                  MEDIA_ROOT=str(media_root))
            run = wait_for(lambda: InferenceRun.objects.filter(pk=run.pk, status="done").first(), timeout=90,
                           what="the rescuer to finish the run")
        finally:
            if first.poll() is None:
                first.kill()
            if second is not None:
                stop_worker(second)
    assert (run.done, run.failed, run.total) == (60, 0, 60)
    assert Response.objects.filter(run=run).count() == 60
    assert Response.objects.filter(run=run).values("question").distinct().count() == 60
