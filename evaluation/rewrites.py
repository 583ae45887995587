"""Rewrite runs: a rewriter model proposes rewrites of seed questions for curators to review."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from annotation.models import Dataset, Question
from annotation.tasks_catalog import DIALOGUE_TASKS

from .backends.base import Message
from .critics import DEFAULT_CRITIC_TEMPLATE_NAME
from .models import (
    ModelEndpoint,
    PromptTemplate,
    RewriteRun,
)
from .runs import run_enqueue, run_resume, run_work_through


def rewrite_template_default() -> PromptTemplate:
    from .prompts import DEFAULT_REWRITE_TEMPLATE

    template, _ = PromptTemplate.objects.get_or_create(
        kind=PromptTemplate.Kind.REWRITE, name=DEFAULT_CRITIC_TEMPLATE_NAME, version=1,
        defaults={"body": DEFAULT_REWRITE_TEMPLATE, "note": "alignbench default (Chinese)"},
    )
    return template


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
