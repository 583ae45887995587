"""Critic runs: a critic model scores the answers of inference runs, with a prompt template."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotation.models import Question

from .backends.base import Message
from .models import (
    CriticRun,
    CriticScore,
    InferenceRun,
    ModelEndpoint,
    PromptTemplate,
    Response,
)
from .runs import Every, generate_in_chunks, run_enqueue, run_resume, run_work_through

DEFAULT_CRITIC_TEMPLATE_NAME = "alignbench-default"


def critic_template_default() -> PromptTemplate:
    """Our Chinese CritiqueVLM-style template, version 1, created on first use."""
    from .prompts import DEFAULT_CRITIC_TEMPLATE

    template, _ = PromptTemplate.objects.get_or_create(
        kind=PromptTemplate.Kind.CRITIC, name=DEFAULT_CRITIC_TEMPLATE_NAME, version=1,
        defaults={"body": DEFAULT_CRITIC_TEMPLATE, "note": "alignbench default (Chinese, CritiqueVLM-style)"},
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


def critic_run_refresh_counts(run: CriticRun) -> None:
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
                    critic_run_refresh_counts(run)
            todo = again
            if not todo:
                break

    run_work_through(run, pending=pending, batch_size=batch_size, handle_batch=handle_batch,
                     refresh_counts=lambda: critic_run_refresh_counts(run))


@transaction.atomic
def critic_run_retry(*, run: CriticRun) -> int:
    """Score again the responses whose reply was unparsed or whose request failed."""
    if run.is_active:
        raise ValueError("Wait for the critic run to stop (or cancel it) before retrying.")
    deleted, _ = CriticScore.objects.filter(
        critic_run=run, parse_status__in=[CriticScore.ParseStatus.UNPARSED, CriticScore.ParseStatus.FAILED]
    ).delete()
    critic_run_refresh_counts(run)
    run_resume(run=run)
    return deleted
