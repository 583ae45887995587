"""Answers and critiques made elsewhere, in and out as the official JSONL; the JSONL reader and writer
every format shares (the AlignMMBench questions too) and the download header."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from django.db import transaction
from django.http import HttpResponseBase
from django.utils import timezone
from django.utils.http import content_disposition_header

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

# --- the JSONL every format shares: one reader, one writer, one download header ------------------------


@dataclass
class Line:
    """One non-blank line of a JSONL file: its JSON object, or the reason it has none."""

    number: int
    text: str | None  # None: the line is not UTF-8
    record: dict | None = None
    error: str = ""


def json_type_name(value) -> str:
    return type(value).__name__ if value is not None else "null"


def _decoded(number: int, raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError:
        return None


def jsonl_read(source: bytes | Iterable[str]) -> Iterator[Line]:
    """The numbered non-blank lines of a JSONL file, each with its JSON object or why it has none.

    Bytes are split at line ends and decoded line by line, so a line that is not UTF-8 fails alone;
    text (an open file, a list of lines) is taken line by line as it is.
    """
    lines = (((n, _decoded(n, raw)) for n, raw in enumerate(source.splitlines(), start=1))
             if isinstance(source, bytes) else enumerate(source, start=1))
    for number, text in lines:
        if text is None:
            yield Line(number, None, error="the line is not valid UTF-8")
            continue
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Line(number, text, error=f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            yield Line(number, text, error=f"expected a JSON object, got {json_type_name(record)}")
            continue
        yield Line(number, text, record)


def jsonl_line(record: dict) -> str:
    """One record as a JSONL line: Chinese stays readable (not \\u escapes)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def jsonl_write(records: Iterable[dict], out: IO[str]) -> int:
    count = 0
    for record in records:
        out.write(jsonl_line(record))
        count += 1
    return count


def attachment(response: HttpResponseBase, filename: str) -> HttpResponseBase:
    """Offer ``response`` as a download named ``filename`` (a non-ASCII name is sent RFC 6266-encoded)."""
    response["Content-Disposition"] = content_disposition_header(True, filename)
    return response


# --- answers and critiques ------------------------------------------------------------------------------


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
    for line in jsonl_read(lines):
        number, record = line.number, line.record
        if record is None:
            report.failed.append((number, line.error))
            continue
        if not isinstance(record.get("question_id"), str) or not isinstance(record.get("predict"), str):
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
    responses = Response.objects.filter(run=run, error="").select_related("question").order_by(
        "question__group", "question__variant")
    return jsonl_write(({"question_id": r.question.question_id, "predict": r.text} for r in responses), out)


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
    for line in jsonl_read(lines):
        number, record = line.number, line.record
        if record is None:
            report.failed.append((number, line.error))
            continue
        if not isinstance(record.get("question_id"), str):
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
            critique=reason if isinstance(reason, str) else "", raw_output=line.text.strip(),
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
    return jsonl_write(_critique_records(run), out)


def _critique_records(run: CriticRun) -> Iterator[dict]:
    rows = CriticScore.objects.filter(critic_run=run).select_related("response__question").order_by(
        "response__question__group", "response__question__variant")
    for row in rows:
        record = {"question_id": row.response.question.question_id, "Rating": row.score, "Reason": row.critique}
        if row.score is None:
            record["parse_status"] = row.parse_status
        if row.expected_score is not None:
            record["expected_score"] = round(row.expected_score, 4)
        yield record
