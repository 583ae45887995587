"""Workflows that span models or enqueue jobs. Keyword-only arguments, <noun>_<verb> names."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotation.models import Dataset, Question
from annotation.tasks_catalog import DIALOGUE_TASKS, TASKS

from .backends.base import Message
from .models import (
    CriticRun,
    CriticScore,
    EndpointCheck,
    InferenceRun,
    ModelEndpoint,
    Ping,
    PromptTemplate,
    Response,
    RewriteRun,
    Run,
)

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




CHECK_IMAGE_SIZE = (64, 64)


@transaction.atomic
def endpoint_check_create(*, endpoint: ModelEndpoint) -> EndpointCheck:
    from .tasks import check_endpoint

    check = EndpointCheck.objects.create(endpoint=endpoint)
    transaction.on_commit(lambda: check_endpoint.apply_async((check.pk,), queue=endpoint.queue))
    return check


def endpoint_check_work(check_id: int) -> None:
    """One tiny generation: a small drawn image and a short Chinese question (text only for critics)."""
    import tempfile

    from PIL import Image as PILImage

    from .backends import get_backend

    check = EndpointCheck.objects.select_related("endpoint").filter(pk=check_id).first()
    if check is None or check.status != EndpointCheck.Status.QUEUED:
        return
    endpoint = check.endpoint
    started = time.monotonic()
    try:
        with tempfile.NamedTemporaryFile(suffix=".png") as handle:
            if endpoint.role == ModelEndpoint.Role.VLM:
                PILImage.new("RGB", CHECK_IMAGE_SIZE, (200, 40, 40)).save(handle.name)
                conversation = [Message("user", "图片是什么颜色？用一个词回答。", (handle.name,))]
            else:
                conversation = [Message("user", "用一句话介绍你自己。")]
            config = endpoint.to_backend_config()
            backend = get_backend(config, cache_key=endpoint.cache_key)
            result = backend.generate([conversation])[0]
        status = EndpointCheck.Status.FAILED if result.error else EndpointCheck.Status.DONE
        EndpointCheck.objects.filter(pk=check.pk).update(status=status, output=result.text, error=result.error,
                                                         latency_s=time.monotonic() - started)
    except Exception as exc:
        EndpointCheck.objects.filter(pk=check.pk).update(status=EndpointCheck.Status.FAILED,
                                                         error=f"{type(exc).__name__}: {exc}"[:4000],
                                                         latency_s=time.monotonic() - started)


# --- the run loop shared by inference, critic and rewrite runs -------------------------------------------


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


# --- inference runs -------------------------------------------------------------------------------------


def conversation_for(question: Question, *, image_path: str | None) -> list[Message]:
    """Dialogue history as earlier turns, the image in the first user turn, the question last."""
    images = (image_path,) if image_path else ()
    messages: list[Message] = []
    for turn in question.dialogue_history or []:
        messages.append(Message("user", turn["user"], images if not messages else ()))
        messages.append(Message("assistant", turn["assistant"]))
    messages.append(Message("user", question.text, images if not messages else ()))
    return messages


@transaction.atomic
def inference_run_create(*, endpoint: ModelEndpoint, dataset: Dataset, tasks: list[str] | None = None,
                         variants: list[int] | None = None, by=None) -> InferenceRun:
    """A run over the dataset's accepted questions (only ``tasks`` and ``variants`` when given); a
    ValueError, and no run, for an unknown task or a selection with no questions."""
    if endpoint.role != ModelEndpoint.Role.VLM:
        raise ValueError(f"Endpoint {endpoint.name} is a {endpoint.role}, not a VLM.")
    if unknown := sorted(set(tasks or []) - set(TASKS)):
        raise ValueError(f"Unknown task {', '.join(unknown)}; the tasks are {', '.join(TASKS)}.")
    run = InferenceRun(endpoint=endpoint, dataset=dataset, tasks=tasks or [], variants=variants or [],
                       params=endpoint.generation_params(), created_by=by)
    run.total = run.questions().count()
    if not run.total:
        raise ValueError(f"No accepted questions in {dataset.name} match these tasks and variants: nothing to run.")
    run.save()
    run_enqueue(run)
    return run


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


def _refresh_inference_counts(run: InferenceRun) -> None:
    counts = Response.objects.filter(run=run).aggregate(done=Count("id", filter=Q(error="")),
                                                        failed=Count("id", filter=~Q(error="")))
    total = run.questions().count()
    InferenceRun.objects.filter(pk=run.pk).update(total=total, updated_at=timezone.now(), **counts)


def inference_run_work(run_id: int) -> None:
    from .backends import get_backend

    run = InferenceRun.objects.select_related("endpoint").filter(pk=run_id).first()
    if run is None:
        return
    endpoint = run.endpoint
    batch_size = endpoint.items_per_batch

    def pending():
        # Only what a conversation needs: the other columns cost the worker ~10% of its CPU to load.
        return run.pending_questions().select_related("image").only(
            "text", "history", "dataset_id", "group", "variant", "image__file").order_by("id")

    def handle_batch(questions: list[Question]) -> None:
        backend = get_backend(endpoint.to_backend_config(), cache_key=endpoint.cache_key)
        Question.attach_seeds(questions)  # rewrites of dialogue questions answer after the seed's history
        conversations = [conversation_for(q, image_path=q.image.file.path) for q in questions]
        progress_due = Every(1.0)
        for chunk in generate_in_chunks(backend, conversations, keep_going=run.holds_claim):
            # The human counts are given although the database defaults them: left to db_default,
            # bulk_create resolves a DEFAULT expression per row and field, ~10% of the worker's CPU.
            Response.objects.bulk_create(
                [Response(run=run, question=questions[i], text=r.text, error=r.error[:4000], latency_s=r.latency_s,
                          prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens,
                          human_count=0, human_sum=0) for i, r in chunk],
                ignore_conflicts=True,  # a duplicate after a crash is dropped; the first answer stays
            )
            if progress_due():
                _refresh_inference_counts(run)

    run_work_through(run, pending=pending, batch_size=batch_size, handle_batch=handle_batch,
                     refresh_counts=lambda: _refresh_inference_counts(run))


@transaction.atomic
def inference_run_retry_failed(*, run: InferenceRun) -> int:
    """Drop the failed answers (kept in no other place but the run) and resume to redo them."""
    if run.is_active:
        raise ValueError("Wait for the run to stop (or cancel it) before retrying its failed items.")
    deleted, _ = Response.objects.filter(run=run).exclude(error="").delete()
    _refresh_inference_counts(run)
    run_resume(run=run)
    return deleted


# --- bring your own answers -----------------------------------------------------------------------------


@dataclass
class ImportReport:
    imported: int = 0
    unchanged: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        return f"imported={self.imported} unchanged={self.unchanged} failed={len(self.failed)}"


def _question_index(dataset: Dataset) -> dict[str, Question]:
    return {q.question_id: q for q in Question.objects.filter(dataset=dataset).accepted()}


@transaction.atomic
def responses_import(*, lines: Iterable[str], endpoint: ModelEndpoint, dataset: Dataset, by=None,
                     run: InferenceRun | None = None) -> tuple[InferenceRun | None, ImportReport]:
    """Official `{"question_id", "predict"}` JSONL as an imported run; each bad line reported by number.

    With ``run`` (an earlier import of the same endpoint and dataset) the answers are added to it, so
    a file fixed after a partial import can be imported again: the lines already in are "unchanged".
    When no line can be imported into a new run, nothing is stored and the run is None.
    """
    if endpoint.role != ModelEndpoint.Role.VLM:
        raise ValueError(f"Endpoint {endpoint.name} is a {endpoint.role}: answers are imported for VLM endpoints.")
    if run is not None and (run.source != InferenceRun.Source.IMPORT or run.endpoint_id != endpoint.pk
                            or run.dataset_id != dataset.pk):
        raise ValueError(f"Run {run.pk} is not an import of {endpoint.name} over {dataset.name}.")
    report = ImportReport()
    questions = _question_index(dataset)
    existing = dict(Response.objects.filter(run=run).values_list("question__id", "text")) if run else {}
    new: dict[int, Response] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            report.failed.append((number, f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("question_id"), str) or not isinstance(
                record.get("predict"), str):
            report.failed.append((number, 'needs "question_id" and "predict" strings'))
            continue
        question = questions.get(record["question_id"])
        if question is None:
            report.failed.append((number, f"question_id {record['question_id']} is not in dataset {dataset.name}"))
            continue
        if question.id in existing or question.id in new:
            previous = existing.get(question.id, new[question.id].text if question.id in new else None)
            if previous == record["predict"]:
                report.unchanged += 1
            else:
                report.failed.append((number, f"question_id {record['question_id']} already has a different answer"))
            continue
        new[question.id] = Response(question=question, text=record["predict"])
    if run is None:
        if not new:
            return None, report
        run = InferenceRun.objects.create(endpoint=endpoint, dataset=dataset, source=InferenceRun.Source.IMPORT,
                                          status=Run.Status.DONE, params={"imported": True}, created_by=by,
                                          started_at=timezone.now(), finished_at=timezone.now())
    for response in new.values():
        response.run = run
    Response.objects.bulk_create(new.values(), batch_size=1000)
    report.imported = len(new)
    _refresh_inference_counts(run)
    run.refresh_from_db()
    return run, report


def responses_export(*, run: InferenceRun, out: IO[str]) -> int:
    count = 0
    for response in Response.objects.filter(run=run).select_related("question").order_by("question__group",
                                                                                           "question__variant"):
        if response.error:
            continue
        out.write(json.dumps({"question_id": response.question.question_id, "predict": response.text},
                             ensure_ascii=False) + "\n")
        count += 1
    return count


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


# --- critic runs ----------------------------------------------------------------------------------------

DEFAULT_CRITIC_TEMPLATE_NAME = "alignbench-default"


def critic_template_default() -> PromptTemplate:
    """Our Chinese CritiqueVLM-style template, version 1, created on first use."""
    from .prompts import DEFAULT_CRITIC_TEMPLATE

    template, _ = PromptTemplate.objects.get_or_create(
        kind=PromptTemplate.Kind.CRITIC, name=DEFAULT_CRITIC_TEMPLATE_NAME, version=1,
        defaults={"body": DEFAULT_CRITIC_TEMPLATE, "note": "alignbench default (Chinese, CritiqueVLM-style)"},
    )
    return template


def rewrite_template_default() -> PromptTemplate:
    from .prompts import DEFAULT_REWRITE_TEMPLATE

    template, _ = PromptTemplate.objects.get_or_create(
        kind=PromptTemplate.Kind.REWRITE, name=DEFAULT_CRITIC_TEMPLATE_NAME, version=1,
        defaults={"body": DEFAULT_REWRITE_TEMPLATE, "note": "alignbench default (Chinese)"},
    )
    return template


def critic_prompt(*, template: PromptTemplate, response: Response) -> str:
    from .prompts import render_critic_prompt

    question = response.question
    return render_critic_prompt(template.body, task=question.task, history=question.dialogue_history,
                                question=question.text,
                                reference=question.reference_answer, answer=response.text,
                                task_rules=template.task_rules)


@transaction.atomic
def critic_run_create(*, critic: ModelEndpoint, template: PromptTemplate, inference_runs: list[InferenceRun],
                      max_retries: int = 2, by=None) -> CriticRun:
    if critic.role != ModelEndpoint.Role.CRITIC:
        raise ValueError(f"Endpoint {critic.name} is a {critic.role}, not a critic.")
    if template.kind != PromptTemplate.Kind.CRITIC:
        raise ValueError(f"Template {template} is not a critic template.")
    if not inference_runs:
        raise ValueError("Pick at least one inference run to score.")
    run = CriticRun.objects.create(critic=critic, template=template, max_retries=max_retries, created_by=by,
                                   params={**critic.generation_params(), "template": str(template)})
    run.inference_runs.set(inference_runs)
    run.total = run.responses().count()
    run.save(update_fields=["total"])
    run_enqueue(run)
    return run


def _refresh_critic_counts(run: CriticRun) -> None:
    S = CriticScore.ParseStatus
    counts = CriticScore.objects.filter(critic_run=run).aggregate(
        done=Count("id", filter=Q(parse_status__in=[S.PARSED, S.RECOVERED])),
        unparsed=Count("id", filter=Q(parse_status=S.UNPARSED)),
        failed=Count("id", filter=Q(parse_status=S.FAILED)),
    )
    CriticRun.objects.filter(pk=run.pk).update(total=run.responses().count(), updated_at=timezone.now(), **counts)


def _critic_conversation(prompt: str, response: Response, *, send_image: bool) -> list[Message]:
    images = (response.question.image.file.path,) if send_image else ()
    return [Message("user", prompt, images)]


def critic_score_build(*, run: CriticRun, response: Response, prompt: str, result, attempts: int) -> CriticScore:
    from .backends import expected_score
    from .parsing import parse_critique

    row = CriticScore(critic_run=run, response=response, prompt=prompt, raw_output=result.text, attempts=attempts)
    if result.error:
        row.parse_status, row.error = CriticScore.ParseStatus.FAILED, result.error[:4000]
        return row
    parsed = parse_critique(result.text)
    row.score, row.critique, row.parse_status = parsed.rating, parsed.reason, parsed.status
    if result.score_probs:
        mean, spread = expected_score(result.score_probs)
        row.expected_score, row.expected_spread = min(max(mean, 1.0), 10.0), spread
    return row


def critic_run_work(run_id: int) -> None:
    from .backends import get_backend

    run = CriticRun.objects.select_related("critic", "template").filter(pk=run_id).first()
    if run is None:
        return
    critic = run.critic
    batch_size = critic.items_per_batch

    def pending():
        return run.pending_responses().select_related("question__image").order_by("id")

    def handle_batch(responses: list[Response]) -> None:
        backend = get_backend(critic.to_backend_config(), cache_key=critic.cache_key)
        Question.attach_seeds([r.question for r in responses])  # the reference and history of rewrites
        prompts = {r.pk: critic_prompt(template=run.template, response=r) for r in responses}
        todo = list(responses)
        progress_due = Every(1.0)
        # An unparseable reply is asked again (bounded); a request that failed was already retried
        # by the backend, so it is recorded as failed at once. Understood replies are stored as
        # they arrive; the last attempt stores whatever it got.
        for attempt in range(1, run.max_retries + 2):
            last_attempt = attempt == run.max_retries + 1
            conversations = [_critic_conversation(prompts[r.pk], r, send_image=critic.send_image) for r in todo]
            again: list[Response] = []
            for chunk in generate_in_chunks(backend, conversations, score_probs=True, keep_going=run.holds_claim):
                rows = []
                for i, result in chunk:
                    row = critic_score_build(run=run, response=todo[i], prompt=prompts[todo[i].pk], result=result,
                                             attempts=attempt)
                    if row.parse_status == CriticScore.ParseStatus.UNPARSED and not last_attempt:
                        again.append(todo[i])
                    else:
                        rows.append(row)
                CriticScore.objects.bulk_create(rows, ignore_conflicts=True)
                if progress_due():
                    _refresh_critic_counts(run)
            todo = again
            if not todo:
                break

    run_work_through(run, pending=pending, batch_size=batch_size, handle_batch=handle_batch,
                     refresh_counts=lambda: _refresh_critic_counts(run))


@transaction.atomic
def critic_run_retry(*, run: CriticRun) -> int:
    """Score again the responses whose reply was unparsed or whose request failed."""
    if run.is_active:
        raise ValueError("Wait for the critic run to stop (or cancel it) before retrying.")
    deleted, _ = CriticScore.objects.filter(
        critic_run=run, parse_status__in=[CriticScore.ParseStatus.UNPARSED, CriticScore.ParseStatus.FAILED]
    ).delete()
    _refresh_critic_counts(run)
    run_resume(run=run)
    return deleted


@transaction.atomic
def critiques_import(*, lines: Iterable[str], run: InferenceRun, critic_name: str,
                     by=None) -> tuple[CriticRun | None, ImportReport]:
    """The released runner's JSONL (question_id, Rating, Reason) as a critic run over ``run``.

    Its -1 (or a missing/invalid rating) means "unparsed": stored as such with the raw line, and
    counted, never averaged in. Bad lines are reported by number; when no line can be imported,
    nothing is stored and the run is None.
    """
    report = ImportReport()
    responses = {r.question.question_id: r for r in Response.objects.filter(run=run, error="").select_related("question")}
    rows: dict[int, CriticScore] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            report.failed.append((number, f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("question_id"), str):
            report.failed.append((number, 'needs a "question_id" string'))
            continue
        response = responses.get(record["question_id"])
        if response is None:
            report.failed.append((number, f"question_id {record['question_id']} has no answer in run {run.pk}"))
            continue
        if response.pk in rows:
            report.failed.append((number, f"question_id {record['question_id']} appears twice"))
            continue
        rating, reason = record.get("Rating"), record.get("Reason")
        valid = isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 10
        rows[response.pk] = CriticScore(
            response=response, score=rating if valid else None,
            critique=reason if isinstance(reason, str) else "", raw_output=line.strip(),
            parse_status=CriticScore.ParseStatus.PARSED if valid else CriticScore.ParseStatus.UNPARSED,
        )
    if not rows:
        return None, report
    critic = ModelEndpoint.objects.filter(name=critic_name, role=ModelEndpoint.Role.CRITIC).first()
    critic_run = CriticRun.objects.create(critic=critic, name=critic_name, status=Run.Status.DONE, created_by=by,
                                          params={"imported": True}, started_at=timezone.now(),
                                          finished_at=timezone.now())
    critic_run.inference_runs.set([run])
    for row in rows.values():
        row.critic_run = critic_run
    CriticScore.objects.bulk_create(rows.values(), batch_size=1000)
    report.imported = len(rows)
    _refresh_critic_counts(critic_run)
    critic_run.refresh_from_db()
    return critic_run, report


def critiques_export(*, run: CriticRun, out: IO[str]) -> int:
    count = 0
    rows = CriticScore.objects.filter(critic_run=run).select_related("response__question").order_by(
        "response__question__group", "response__question__variant")
    for row in rows:
        record = {"question_id": row.response.question.question_id, "Rating": row.score, "Reason": row.critique}
        if row.score is None:
            record["parse_status"] = row.parse_status
        if row.expected_score is not None:
            record["expected_score"] = round(row.expected_score, 4)
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


# --- rewrite runs ---------------------------------------------------------------------------------------


def rewritable_seeds(dataset: Dataset | int | str):
    """Seeds that may get rewrites: accepted variant-0 questions that are not dialogues."""
    return Question.objects.filter(dataset=dataset).seeds().accepted().exclude(task__in=DIALOGUE_TASKS)


@transaction.atomic
def rewrite_run_create(*, endpoint: ModelEndpoint, dataset: Dataset, template: PromptTemplate | None = None,
                       per_seed: int = 5, seeds: Iterable[Question] | None = None, tasks: list[str] | None = None,
                       by=None) -> RewriteRun:
    if endpoint.role != ModelEndpoint.Role.REWRITER:
        raise ValueError(f"Endpoint {endpoint.name} is a {endpoint.role}, not a rewriter.")
    dataset.ensure_editable()
    template = template or rewrite_template_default()
    candidates = rewritable_seeds(dataset)
    if tasks:
        candidates = candidates.filter(task__in=tasks)
    if seeds is not None:
        # Hand-picked: dialogues and rewrites are never offered, whatever was ticked.
        candidates = candidates.filter(pk__in=[s.pk for s in seeds])
    seed_ids = list(candidates.order_by("id").values_list("id", flat=True))
    run = RewriteRun.objects.create(endpoint=endpoint, template=template, dataset=dataset, per_seed=per_seed,
                                    seed_ids=seed_ids, total=len(seed_ids), created_by=by,
                                    params={**endpoint.generation_params(), "template": str(template)})
    run_enqueue(run)
    return run


def rewrite_proposals_store(*, run: RewriteRun, seed: Question, reply: str) -> tuple[int, int, str]:
    """Parse one reply, drop duplicates, flag drift, store proposals. Returns (kept, dropped, error)."""
    from annotation.drift import detect_drift

    from .parsing import dedupe_rewrites, parse_rewrites

    parsed = parse_rewrites(reply)
    if parsed.error:
        return 0, 0, parsed.error
    existing = list(Question.objects.in_group(seed).exclude(pk=seed.pk).values_list("text", flat=True))
    kept, dropped = dedupe_rewrites(seed.text, existing, parsed.rewrites)
    Question.objects.bulk_create([
        Question(dataset_id=seed.dataset_id, image_id=seed.image_id, task=seed.task, group=seed.group, variant=None,
                 text=text, origin=Question.Origin.LLM, status=Question.Status.PROPOSED, rewrite_run=run,
                 drift=[{"kind": d.kind, "token": d.token, "message": d.message}
                        for d in detect_drift(seed.text, text)])
        for text in kept
    ])
    return len(kept), dropped, ""


def rewrite_run_work(run_id: int) -> None:
    from .backends import get_backend
    from .prompts import render_rewrite_prompt

    run = RewriteRun.objects.select_related("endpoint", "template").filter(pk=run_id).first()
    if run is None:
        return
    endpoint = run.endpoint
    # Seeds are stored per batch (no streaming here), so keep batches to two waves for live progress.
    batch_size = min(endpoint.items_per_batch, max(endpoint.concurrency * 2, 8))

    def pending():
        return run.pending_seeds().order_by("id")

    def handle_batch(seeds: list[Question]) -> None:
        backend = get_backend(endpoint.to_backend_config(), cache_key=endpoint.cache_key)
        conversations = [[Message("user", render_rewrite_prompt(run.template.body, question=seed.text,
                                                                n=run.per_seed, task=seed.task))] for seed in seeds]
        results = backend.generate(conversations)
        with transaction.atomic():
            fresh = RewriteRun.objects.select_for_update().get(pk=run.pk)
            for seed, result in zip(seeds, results, strict=True):
                if result.error:
                    kept, dropped, error = 0, 0, result.error
                else:
                    kept, dropped, error = rewrite_proposals_store(run=fresh, seed=seed, reply=result.text)
                if error:
                    fresh.report.append({"question": seed.pk, "question_id": seed.question_id, "error": error,
                                         "raw": result.text[:4000]})
                    fresh.failed += 1
                else:
                    fresh.done += 1
                fresh.proposed += kept
                fresh.duplicates_dropped += dropped
                fresh.processed_ids.append(seed.pk)
            fresh.save(update_fields=["report", "failed", "done", "proposed", "duplicates_dropped", "processed_ids",
                                      "updated_at"])
        run.processed_ids = fresh.processed_ids

    def refresh_counts() -> None:
        run.refresh_from_db(fields=["processed_ids"])

    run_work_through(run, pending=pending, batch_size=batch_size, handle_batch=handle_batch,
                     refresh_counts=refresh_counts)


@transaction.atomic
def rewrite_run_retry(*, run: RewriteRun) -> int:
    """Ask again for the seeds whose reply could not be used."""
    if run.is_active:
        raise ValueError("Wait for the rewrite run to stop (or cancel it) before retrying.")
    failed_ids = {entry["question"] for entry in run.report}
    run.processed_ids = [pk for pk in run.processed_ids if pk not in failed_ids]
    run.report, run.failed = [], 0
    run.save(update_fields=["processed_ids", "report", "failed"])
    run_resume(run=run)
    return len(failed_ids)
