"""A real Celery worker (not eager mode) against the configured broker and the test database."""

import pytest
from django.urls import reverse

from evaluation.models import Ping, Worker
from evaluation.workers import ping_create
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("queue", ["default", "gpu"])
def test_it_answers_a_test_job_through_a_real_worker(celery_worker, queue):
    ping = ping_create(queue=queue)
    answered = wait_for(lambda: Ping.objects.filter(pk=ping.pk, answered_at__isnull=False).first(), timeout=30,
                        what=f"the worker to answer on {queue}")
    assert answered.answered_by.startswith("session@")


def test_it_shows_the_worker_and_its_queues_on_the_status_page(celery_worker, client, staff):
    worker = wait_for(lambda: Worker.objects.filter(name__startswith="session@").first(), timeout=20,
                      what="a heartbeat")
    assert sorted(worker.queues) == ["default", "gpu"]
    client.force_login(staff)
    html = client.get(reverse("evaluation:status")).content.decode()
    assert worker.name in html and "default, gpu" in html
