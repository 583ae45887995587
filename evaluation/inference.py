"""Inference runs: a VLM answers a dataset's accepted questions."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotation.models import Dataset, Question
from annotation.tasks_catalog import TASKS

from .backends.base import Message
from .models import (
    InferenceRun,
    ModelEndpoint,
    Response,
)
from .runs import Every, generate_in_chunks, run_enqueue, run_resume, run_work_through


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


def inference_run_refresh_counts(run: InferenceRun) -> None:
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
                inference_run_refresh_counts(run)

    run_work_through(run, pending=pending, batch_size=batch_size, handle_batch=handle_batch,
                     refresh_counts=lambda: inference_run_refresh_counts(run))


@transaction.atomic
def inference_run_retry_failed(*, run: InferenceRun) -> int:
    """Drop the failed answers (kept in no other place but the run) and resume to redo them."""
    if run.is_active:
        raise ValueError("Wait for the run to stop (or cancel it) before retrying its failed items.")
    deleted, _ = Response.objects.filter(run=run).exclude(error="").delete()
    inference_run_refresh_counts(run)
    run_resume(run=run)
    return deleted
