"""Answers and critiques made elsewhere, in and out as the official JSONL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from django.db import transaction
from django.utils import timezone

from annotation.models import Dataset, Question

from .critics import critic_run_refresh_counts
from .inference import inference_run_refresh_counts
from .models import (
    CriticRun,
    CriticScore,
    InferenceRun,
    ModelEndpoint,
    Response,
    Run,
)


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
    inference_run_refresh_counts(run)
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
    critic_run_refresh_counts(critic_run)
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
