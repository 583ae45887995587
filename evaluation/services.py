"""Workflows that span models or enqueue jobs. Keyword-only arguments, <noun>_<verb> names."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from .models import CriticRun, InferenceRun, Ping, RewriteRun, Run

log = logging.getLogger(__name__)


def broker_status() -> dict:
    """Can we reach the broker? A connection attempt works the same for Redis and the filesystem."""
    from alignbench_site.celery import app

    url = settings.CELERY_BROKER_URL
    shown = url.split("@")[-1] if "@" in url else url  # never show a password
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "detail": shown}
    except Exception as exc:
        return {"ok": False, "detail": f"{shown}: {exc}"}


@transaction.atomic
def ping_create(*, queue: str = "default") -> Ping:
    from .tasks import answer_ping

    ping = Ping.objects.create(queue=queue)
    transaction.on_commit(lambda: answer_ping.apply_async((ping.pk,), queue=queue))
    return ping


def run_enqueue(run: Run) -> None:
    """Put a run's task on the right queue once the surrounding transaction commits."""
    from . import tasks

    if isinstance(run, InferenceRun):
        task, queue = tasks.run_inference, run.endpoint.queue
    elif isinstance(run, CriticRun):
        task, queue = tasks.run_critic, run.critic.queue if run.critic_id else "default"
    elif isinstance(run, RewriteRun):
        task, queue = tasks.run_rewrites, run.endpoint.queue
    else:
        raise TypeError(f"not a run: {run!r}")
    transaction.on_commit(lambda: task.apply_async((run.pk,), queue=queue))


def requeue_orphaned_runs() -> int:
    """Runs held by a worker that stopped beating go back on the queue (once: the UPDATE decides)."""
    count = 0
    for model in (InferenceRun, CriticRun, RewriteRun):
        for run in model.objects.orphaned():
            with transaction.atomic():
                taken = model.objects.filter(pk=run.pk, claimed_by=run.claimed_by, status=Run.Status.RUNNING).update(
                    status=Run.Status.QUEUED, claimed_by=""
                )
                if taken:
                    log.warning("%s was held by dead worker %s: re-queued", run, run.claimed_by)
                    run_enqueue(run)
                    count += 1
    return count


def inference_run_work(run_id: int) -> None:
    raise NotImplementedError("inference runs arrive with issue 4")


def critic_run_work(run_id: int) -> None:
    raise NotImplementedError("critic runs arrive with issue 5")


def rewrite_run_work(run_id: int) -> None:
    raise NotImplementedError("rewrite runs arrive with issue 6")
