"""The official AlignMMBench format: the import (every line checked, images once each, idempotent on
question_id) and the export (JSONL, CSV, a zip of the images)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from evaluation.exchange import Line, json_type_name, jsonl_read, jsonl_write

from .images import ImageRejected, PreparedImage, check_size, clean_relative_path, prepare_image, store_image
from .models import Dataset, Image, Question
from .tasks_catalog import TASKS

if TYPE_CHECKING:
    from django.contrib.auth.models import User


LINE_KEYS = ("question_id", "image_path", "history", "prompt", "ref_answer", "task", "category")
QUESTION_ID = re.compile(r"^(\d{8})-(\d{1,4})$")
CHUNK = 1000  # questions per bulk insert (and per transaction)
IMAGE_BATCH = 16  # images decoded in parallel before they are stored
IMAGE_THREADS = 4  # Pillow releases the GIL while decoding and encoding


# --------------------------------------------------------------------------------------------------
# Import: the report
# --------------------------------------------------------------------------------------------------

@dataclass
class Problem:
    line: int
    question_id: str
    reason: str

    def as_dict(self) -> dict:
        return {"line": self.line, "question_id": self.question_id, "reason": self.reason}


@dataclass
class ImportReport:
    total: int = 0
    imported: int = 0
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.problems)

    def summary(self) -> str:
        lines = [f"imported {self.imported}, unchanged {self.unchanged}, failed {self.failed} (of {self.total} lines)"]
        for problem in sorted(self.problems, key=lambda p: p.line):
            label = f" {problem.question_id}" if problem.question_id else ""
            lines.append(f"  line {problem.line}{label}: {problem.reason}")
        return "\n".join(lines)


class ImportRefused(ValueError):
    """The whole import can't start (frozen dataset, unreadable file); no line was looked at."""


@dataclass
class Row:
    line: int
    question_id: str
    group: str
    variant: int
    image_path: str
    history: list
    prompt: str
    ref_answer: str
    task: str
    record: dict = field(repr=False)


class LineError(ValueError):
    pass


def parse_record(number: int, record: dict) -> Row:
    """One JSONL line's object checked against the official format; raises LineError with the reason."""
    missing = [key for key in LINE_KEYS if key not in record]
    if missing:
        raise LineError(f"missing keys: {', '.join(missing)}")
    for key in ("question_id", "image_path", "prompt", "ref_answer", "task", "category"):
        if not isinstance(record[key], str):
            raise LineError(f"“{key}” must be a string, not {json_type_name(record[key])}")
    match = QUESTION_ID.match(record["question_id"])
    if not match:
        raise LineError(f"question_id “{record['question_id'][:40]}” is not of the form TTTTSSSS-K")
    task = record["task"]
    if task not in TASKS:
        raise LineError(f"unknown task “{task[:40]}” (expected one of: {', '.join(TASKS)})")
    info = TASKS[task]
    if record["category"] != info.category:
        raise LineError(f"category “{record['category'][:40]}” does not match task {task} ({info.category})")
    if match.group(1)[:4] != info.code:
        raise LineError(f"question_id task code {match.group(1)[:4]} does not match task {task} ({info.code})")
    if clean_relative_path(record["image_path"]) != record["image_path"]:
        raise LineError(f"image_path “{record['image_path'][:80]}” must be a plain relative path inside the images folder")
    history = record["history"]
    if not isinstance(history, list) or any(not isinstance(turn, dict) or set(turn) != {"user", "assistant"}
                                            for turn in history):
        raise LineError("history must be a list of {\"user\": ..., \"assistant\": ...} rounds")
    try:
        Question(task=task, text=record["prompt"], history=history).clean()
    except ValidationError as exc:
        raise LineError(" ".join(message for messages in exc.message_dict.values() for message in messages)) from None
    return Row(line=number, question_id=record["question_id"], group=match.group(1), variant=int(match.group(2)),
               image_path=record["image_path"], history=history, prompt=record["prompt"],
               ref_answer=record["ref_answer"], task=task, record={key: record[key] for key in LINE_KEYS})


# --------------------------------------------------------------------------------------------------
# Import: where the images come from
# --------------------------------------------------------------------------------------------------

class ImageMissing(LookupError):
    pass


class ImageFolder:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def read(self, path: str) -> bytes:
        target = (self.root / path).resolve()
        if not target.is_relative_to(self.root) or not target.is_file():
            raise ImageMissing(path)
        check_size(target.stat().st_size)
        return target.read_bytes()

    def close(self) -> None:
        pass


class ImageZip:
    """A zip of the images; members match the image_path exactly or under one top folder."""

    def __init__(self, path: Path) -> None:
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ImportRefused(f"The images zip can't be read: {exc}") from None
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            if info.is_dir():
                continue
            self.members.setdefault(info.filename, info)
            if "/" in info.filename:  # also reachable without a wrapping folder (alignmmbench/images/...)
                self.members.setdefault(info.filename.split("/", 1)[1], info)

    def read(self, path: str) -> bytes:
        info = self.members.get(path)
        if info is None:
            raise ImageMissing(path)
        check_size(info.file_size)  # before inflating: a zip member can be a bomb
        with self.zip.open(info) as member:
            data = member.read(settings.UPLOAD_MAX_BYTES + 1)
        check_size(len(data))
        return data

    def close(self) -> None:
        self.zip.close()


class NoImages:
    def read(self, path: str) -> bytes:
        raise ImageMissing(path)

    def close(self) -> None:
        pass


def open_images(path: str | Path | None):
    if not path:
        return NoImages()
    path = Path(path)
    if path.is_dir():
        return ImageFolder(path)
    if path.is_file():
        return ImageZip(path)
    raise ImportRefused(f"The images folder or zip {path} does not exist.")


def _prepare(source, path: str) -> PreparedImage | Exception:
    try:
        return prepare_image(source.read(path))
    except (ImageRejected, ImageMissing) as exc:
        return exc
    except Exception as exc:  # an unreadable file must fail its rows, not the import
        return ImageRejected(f"could not read the image ({exc})")


def _ingest_paths(paths: list[str], *, source, user, progress: Callable[[int], None]) -> dict[str, int | str]:
    """Each path ingested once: path -> Image id, or path -> the reason it failed."""
    result: dict[str, int | str] = {}
    known = dict(Image.objects.filter(original_name__in=paths).values_list("original_name", "id"))
    with ThreadPoolExecutor(max_workers=IMAGE_THREADS) as pool:
        for start in range(0, len(paths), IMAGE_BATCH):
            batch = paths[start:start + IMAGE_BATCH]
            for path, prepared in zip(batch, pool.map(lambda p: _prepare(source, p), batch), strict=True):
                if isinstance(prepared, ImageMissing):
                    # Not in this folder: an image imported earlier under the same path will do.
                    result[path] = known.get(path) or f"image {path} is missing from the images folder or zip"
                elif isinstance(prepared, Exception):
                    result[path] = f"image {path} was rejected: {prepared}"
                else:
                    ingested = store_image(prepared, filename=path, user=user, source="AlignMMBench import")
                    image = ingested.image
                    if not ingested.created and "/" not in image.original_name:
                        # First seen as a plain upload: remember the benchmark path, so exports keep it.
                        Image.objects.filter(pk=image.pk).update(original_name=path)
                    result[path] = image.pk
            progress(len(batch))
    return result


# --------------------------------------------------------------------------------------------------
# Import: the workflow
# --------------------------------------------------------------------------------------------------

def _read_lines(jsonl: str | Path | bytes) -> list[Line]:
    if isinstance(jsonl, bytes):
        data = jsonl
    else:
        try:
            data = Path(jsonl).read_bytes()
        except OSError as exc:
            raise ImportRefused(f"The JSONL file can't be read: {exc}") from None
    return list(jsonl_read(data))


def _question_id_in(text: str | None) -> str:
    """The question_id a line that failed seems to be about, to name it in the report."""
    match = re.search(r'"question_id"\s*:\s*"([^"]{1,40})"', text or "")
    return match.group(1) if match else ""


def _differs(stored: tuple, wanted: tuple, names: tuple[str, ...]) -> list[str]:
    return [name for name, a, b in zip(names, stored, wanted, strict=True) if a != b]


def alignmmbench_import(*, dataset: Dataset, jsonl: str | Path | bytes, images: str | Path | None = None,
                        user: User | None = None,
                        progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Import an official AlignMMBench JSONL (+ images) into ``dataset``.

    Every line is checked; a bad line is reported by number and reason and nothing of it is stored.
    Idempotent on question_id: a line already imported with the same content is "unchanged".
    The reference answer and dialogue history live on the seed (variant 0); a group's rows must agree
    on them, on the image and on the task, or the disagreeing rows fail.
    """
    if dataset.frozen:
        raise ImportRefused(f"Dataset “{dataset.name}” is frozen: copy it as a new version to import into it.")
    lines = _read_lines(jsonl)
    report = ImportReport(total=len(lines))
    done = 0

    def tick(count: int) -> None:
        nonlocal done
        done += count
        if progress:
            progress(min(done, report.total), report.total)

    def fail(row_or_line, reason: str, question_id: str = "") -> None:
        if isinstance(row_or_line, Row):
            report.problems.append(Problem(row_or_line.line, row_or_line.question_id, reason))
        else:
            report.problems.append(Problem(row_or_line, question_id, reason))

    # 1. Each line on its own; a repeated question_id is fine only with the same content.
    rows: dict[str, Row] = {}
    for line in lines:
        if line.record is None:
            fail(line.number, line.error, _question_id_in(line.text))
            continue
        try:
            row = parse_record(line.number, line.record)
        except LineError as exc:
            fail(line.number, str(exc), _question_id_in(line.text))
            continue
        first = rows.get(row.question_id)
        if first is None:
            rows[row.question_id] = row
        elif first.record == row.record:
            report.unchanged += 1  # the same line twice: nothing more to do
        else:
            fail(row, f"duplicate question_id {row.question_id} with different content (first on line {first.line})")
    parse_done = report.total - len(rows)
    tick(parse_done)

    # 2. Group rules: the seed is the group's reference; rows that disagree with it fail.
    existing = {
        (group, variant): (pk, task, text, history, reference, image_id)
        for pk, group, variant, task, text, history, reference, image_id in dataset.questions.exclude(
            variant=None).values_list("pk", "group", "variant", "task", "text", "history", "reference", "image_id")
    }
    by_group: dict[str, list[Row]] = defaultdict(list)
    for row in rows.values():
        by_group[row.group].append(row)
    failed_seed_lines = {p.question_id: p.line for p in report.problems if p.question_id.endswith("-0")}
    survivors: list[Row] = []
    for group, group_rows in by_group.items():
        group_rows.sort(key=lambda r: r.variant)
        seed = group_rows[0] if group_rows[0].variant == 0 else None
        db_seed = existing.get((group, 0))
        for row in group_rows:
            if row is seed:
                survivors.append(row)
                continue
            if seed is None and db_seed is None:
                line = failed_seed_lines.get(f"{group}-0")
                fail(row, f"its seed {group}-0 failed (line {line})" if line else
                     f"its seed {group}-0 is neither in this file nor in the dataset")
                continue
            if seed is not None:
                wrong = _differs((seed.task, seed.ref_answer, seed.history, seed.image_path),
                                 (row.task, row.ref_answer, row.history, row.image_path),
                                 ("task", "reference answer", "history", "image"))
                if wrong:
                    fail(row, f"disagrees with its seed {group}-0 (line {seed.line}) on the {', '.join(wrong)}")
                    continue
            survivors.append(row)

    # 3. Images: each path once; a missing or bad image fails only its rows.
    source = open_images(images)
    try:
        paths = sorted({row.image_path for row in survivors})
        per_path = defaultdict(int)
        for row in survivors:
            per_path[row.image_path] += 1
        images_done = iter(paths)

        def image_tick(count: int) -> None:
            tick(sum(per_path[next(images_done)] for _ in range(count)))

        image_ids = _ingest_paths(paths, source=source, user=user, progress=image_tick)
    finally:
        source.close()

    # 4. Against the dataset: unchanged, different (fails), or new.
    ok_seeds: set[str] = set()
    candidates: list[tuple[Row, int]] = []
    for row in sorted(survivors, key=lambda r: (r.group, r.variant)):
        image_id = image_ids[row.image_path]
        if isinstance(image_id, str):
            fail(row, image_id)
            continue
        db_seed = existing.get((row.group, 0))
        if row.variant > 0 and db_seed is not None:
            wrong = _differs((db_seed[1], db_seed[4], db_seed[3], db_seed[5]),
                             (row.task, row.ref_answer, row.history, image_id),
                             ("task", "reference answer", "history", "image"))
            if wrong:
                fail(row, f"disagrees with its seed {row.group}-0 already in the dataset on the {', '.join(wrong)}")
                continue
        if row.variant > 0 and db_seed is None and row.group not in ok_seeds:
            fail(row, f"its seed {row.group}-0 failed")
            continue
        stored = existing.get((row.group, row.variant))
        if stored is not None:
            wanted = (row.task, row.prompt, row.history if row.variant == 0 else [],
                      row.ref_answer if row.variant == 0 else "", image_id)
            wrong = _differs(stored[1:], wanted, ("task", "question text", "history", "reference answer", "image"))
            if wrong:
                fail(row, f"{row.question_id} is already in the dataset with a different {', '.join(wrong)}")
            else:
                report.unchanged += 1
                if row.variant == 0:
                    ok_seeds.add(row.group)
            continue
        if row.variant == 0:
            ok_seeds.add(row.group)
        candidates.append((row, image_id))
    tick(len(survivors) - len(candidates))

    # 5. New questions, in chunks: one transaction and one bulk insert per chunk.
    for start in range(0, len(candidates), CHUNK):
        chunk = candidates[start:start + CHUNK]
        objects = [_question_from_row(row, image_id, dataset=dataset, user=user) for row, image_id in chunk]
        try:
            with transaction.atomic():
                dataset.refresh_from_db(fields=["frozen"])
                dataset.ensure_editable()
                Question.objects.bulk_create(objects)
            report.imported += len(objects)
        except IntegrityError:
            # Someone wrote some of these ids meanwhile: fall back to one row at a time.
            for (row, _), question in zip(chunk, objects, strict=True):
                try:
                    with transaction.atomic():
                        question.pk = None
                        question.save()
                    report.imported += 1
                except IntegrityError as exc:
                    fail(row, f"could not be stored ({exc})")
        tick(len(chunk))
    report.problems.sort(key=lambda p: p.line)
    return report


def _question_from_row(row: Row, image_id: int, *, dataset: Dataset, user) -> Question:
    seed = row.variant == 0
    return Question(dataset=dataset, image_id=image_id, task=row.task, group=row.group, variant=row.variant,
                    text=row.prompt, history=row.history if seed else [], reference=row.ref_answer if seed else "",
                    origin=Question.Origin.IMPORT, status=Question.Status.ACCEPTED, created_by=user)


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------

def export_image_paths(images: Iterable[Image]) -> dict[int, str]:
    """The image_path each image is exported under: the imported relative path where there is one,
    else images/<upload name>, else images/<hash>.<ext> when names collide."""
    paths: dict[int, str] = {}
    taken: set[str] = set()
    for image in sorted(images, key=lambda i: ("/" not in i.original_name, i.pk)):
        name = image.original_name
        path = name if "/" in name and clean_relative_path(name) == name else f"images/{name}"
        if not name or path in taken or clean_relative_path(path) != path:
            path = f"images/{image.sha256}.{image.extension}"
        taken.add(path)
        paths[image.pk] = path
    return paths


def _exported_questions(dataset: Dataset) -> QuerySet:
    return (dataset.questions.accepted().exclude(variant=None).select_related("image")
            .order_by("group", "variant"))


def alignmmbench_records(*, dataset: Dataset) -> Iterator[dict]:
    """The dataset's accepted questions as official records, seeds first within each group."""
    questions = list(_exported_questions(dataset))
    paths = export_image_paths({q.image_id: q.image for q in questions}.values())
    seeds = {q.group: q for q in questions if q.variant == 0}
    for question in questions:
        seed = seeds.get(question.group, question)
        yield {
            "question_id": question.question_id,
            "image_path": paths[question.image_id],
            "history": seed.history,
            "prompt": question.text,
            "ref_answer": seed.reference,
            "task": question.task,
            "category": str(TASKS[question.task].category),
        }


def alignmmbench_export(*, dataset: Dataset, out: IO[str]) -> int:
    return jsonl_write(alignmmbench_records(dataset=dataset), out)


def alignmmbench_export_csv(*, dataset: Dataset, out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(LINE_KEYS)
    count = 0
    for record in alignmmbench_records(dataset=dataset):
        record["history"] = json.dumps(record["history"], ensure_ascii=False)
        writer.writerow([record[key] for key in LINE_KEYS])
        count += 1
    return count


def alignmmbench_export_images(*, dataset: Dataset, out: IO[bytes]) -> int:
    """A zip of the dataset's images at the paths its JSONL names. Stored, not deflated: they are
    already compressed."""
    images = Image.objects.filter(pk__in=_exported_questions(dataset).values("image_id"))
    paths = export_image_paths(images)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for image in images:
            with image.file.open("rb") as src, archive.open(paths[image.pk], "w") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
    return len(paths)
