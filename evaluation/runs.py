"""The run loop shared by inference, critic and rewrite runs: enqueue, claim, batches, resume, wait."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.utils import timezone

from .backends.base import Message
from .models import (
    CriticRun,
    InferenceRun,
    RewriteRun,
    Run,
)

log = logging.getLogger(__name__)


def run_enqueue(run: Run) -> None:
    """Put a run's task on the right queue once the surrounding transaction commits (every enqueue in the
    project goes through a Celery task's *_on_commit: never a message for a row not yet committed)."""
    from . import tasks

    if isinstance(run, InferenceRun):
        task, queue = tasks.run_inference, run.endpoint.queue
    elif isinstance(run, CriticRun):
        task, queue = tasks.run_critic, run.critic.queue if run.critic_id else "default"
    elif isinstance(run, RewriteRun):
        task, queue = tasks.run_rewrites, run.endpoint.queue
    else:
        raise TypeError(f"not a run: {run!r}")
    task.apply_async_on_commit((run.pk,), queue=queue)


QUEUED_TOO_LONG = timedelta(minutes=10)


def requeue_orphaned_runs() -> int:
    """Runs held by a worker that stopped beating go back on the queue (once: the UPDATE decides).

    Runs queued for a long time without being touched are re-sent too, in case their message was
    lost with a broker restart; a duplicate message is harmless because a task must claim its run.
    """
    count = 0
    for model in (InferenceRun, CriticRun, RewriteRun):
        forgotten = model.objects.filter(status=Run.Status.QUEUED, updated_at__lt=timezone.now() - QUEUED_TOO_LONG)
        for run in forgotten:
            if model.objects.filter(pk=run.pk, status=Run.Status.QUEUED, updated_at=run.updated_at).update(
                updated_at=timezone.now()
            ):
                with transaction.atomic():
                    run_enqueue(run)
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


class _ShuttingDown(Exception):
    pass


class _NotOurs(Exception):
    """The run was cancelled, or a later claim took it over, while this task was in a batch."""


def run_work_through(run: Run, *, pending: Callable[[], Iterable], batch_size: int,
                     handle_batch: Callable[[list], None], refresh_counts: Callable[[], None]) -> None:
    """Claim the run, then take batches of what is still missing until nothing is.

    Restart-safe by construction: ``pending`` is recomputed from the database each time, and every
    row a batch writes is unique per item, so a re-delivered task or a second worker after a crash
    only ever does what is missing. Cancel is a status checked between batches and, for answers
    that stream in (``generate_in_chunks(keep_going=...)``), between chunks of a batch; a task
    whose claim was taken over by a later one (a resume, a re-delivery) stops the same way.
    """
    from .signals import WORKER_NAME, shutting_down

    if not run.claim(WORKER_NAME):
        log.info("%s is not ours to work on (status %s, held by %s)", run, run.status, run.claimed_by or "nobody")
        return
    if changes := run.endpoint_changes():
        run.finish(error=f"The endpoint changed since this run started ({'; '.join(changes)}). "
                         "Start a new run to use its new settings.")
        return
    try:
        while True:
            if not run.holds_claim():
                log.info("%s cancelled or taken over", run)
                return
            if shutting_down.is_set():
                raise _ShuttingDown
            batch = list(pending()[:batch_size])
            if not batch:
                break
            handle_batch(batch)
            refresh_counts()
        refresh_counts()
        run.refresh_from_db()
        if run.every_request_failed():
            # A dead endpoint or a wrong model name: say so rather than "done" with nothing done.
            run.finish(error="Every request failed (each item's error is listed with it). Fix the endpoint, "
                             "then retry the failed items.")
        else:
            run.finish()
    except _NotOurs:
        log.info("%s cancelled or taken over during a batch", run)
        refresh_counts()
    except (_ShuttingDown, SoftTimeLimitExceeded):
        # Hand the run back: the next worker resumes where this one stopped.
        if type(run).objects.filter(pk=run.pk, status=Run.Status.RUNNING, claim_token=run.claim_token).update(
                status=Run.Status.QUEUED, claimed_by=""):
            with transaction.atomic():
                run_enqueue(run)
    except Exception as exc:
        log.exception("%s failed", run)
        refresh_counts()
        run.finish(error=f"{type(exc).__name__}: {exc}"[:4000])


def generate_in_chunks(backend, conversations: list[list[Message]], *, score_probs: bool = False,
                       flush_every: int = 64, flush_seconds: float = 1.0, keep_going: Callable[[], bool] | None = None,
                       check_seconds: float = 0.25) -> Iterable[list[tuple[int, object]]]:
    """Results in chunks of (index, result) as they finish, for backends that can stream them
    (HTTP); others give one chunk at the end of their batched generate().

    ``keep_going`` is asked at most every ``check_seconds`` as answers arrive; when it says no, what
    has arrived is still handed over, the requests queued or in flight are dropped, and ``_NotOurs``
    is raised.
    """
    stream = getattr(backend, "generate_iter", None)
    if stream is None:
        yield list(enumerate(backend.generate(conversations, score_probs=score_probs)))
        return
    chunk: list[tuple[int, object]] = []
    last = checked = time.monotonic()
    with contextlib.closing(stream(conversations, score_probs=score_probs)) as items:
        for item in items:
            chunk.append(item)
            now = time.monotonic()
            stop = False
            if keep_going is not None and now - checked >= check_seconds:
                checked, stop = now, not keep_going()
            if stop or len(chunk) >= flush_every or now - last >= flush_seconds:
                yield chunk
                chunk, last = [], time.monotonic()
            if stop:
                raise _NotOurs
    if chunk:
        yield chunk


class Every:
    """True at most once per ``seconds``: progress counts refresh often enough for the page to move,
    without a count query after every small chunk of answers."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.last = seconds, time.monotonic()

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            return True
        return False


@transaction.atomic
def run_resume(*, run: Run) -> bool:
    """Put a stopped run back on the queue; it does only what is missing. Imported runs can't be,
    nor runs whose endpoint has since changed what it answers with (ValueError says what)."""
    if changes := run.endpoint_changes():
        raise ValueError(f"{run.model_endpoint} changed since this run started ({'; '.join(changes)}), so "
                         "resuming would mix two models' answers in one run. Start a new run instead.")
    if not run.resumable or not run.requeue():
        return False
    run_enqueue(run)
    return True


def run_wait(run: Run, *, timeout: float | None = None, interval: float = 1.0,
             on_progress: Callable[[Run], None] | None = None) -> Run:
    """Block until the run stops (for `--wait` commands)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run.refresh_from_db()
        if on_progress:
            on_progress(run)
        if not run.is_active:
            return run
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{run} still {run.status} after {timeout} s")
        time.sleep(interval)
