from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from evaluation.models import Ping, Worker


def test_it_shows_database_broker_and_workers(client, staff):
    now = timezone.now()
    Worker.objects.create(name="gpu@box#12", hostname="box", pid=12, queues=["gpu"], started_at=now, last_seen=now)
    Worker.objects.create(name="old@box#9", hostname="box", pid=9, queues=["default"], started_at=now,
                          last_seen=now - timedelta(hours=2))
    client.force_login(staff)
    html = client.get(reverse("evaluation:status")).content.decode()
    assert 'data-testid="db-status">OK' in html
    assert 'data-testid="broker-status">OK' in html
    assert "gpu@box#12" in html and "alive" in html
    assert "old@box#9" in html and "silent" in html


def test_it_renders_only_the_panels_for_htmx(client, staff):
    client.force_login(staff)
    html = client.get(reverse("evaluation:status"), headers={"HX-Request": "true"}).content.decode()
    assert 'id="panels"' in html and "<html" not in html


def test_it_enqueues_a_test_job_after_commit(client, staff, django_capture_on_commit_callbacks):
    client.force_login(staff)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("evaluation:status_ping"), {"queue": "gpu"}, headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Waiting for a worker on queue gpu" in response.content.decode()
    assert len(callbacks) == 1
    assert Ping.objects.get().queue == "gpu"


def test_it_refuses_the_test_job_to_non_staff(client, researcher):
    client.force_login(researcher)
    assert client.post(reverse("evaluation:status_ping")).status_code == 403
    assert not Ping.objects.exists()


def test_it_requires_csrf_for_the_test_job(staff):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.post(reverse("evaluation:status_ping")).status_code == 403
