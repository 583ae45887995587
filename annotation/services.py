"""Workflows that span several rows or models: the AlignMMBench import and export, dataset edits
(create, add, remove, copy as a new version), writing questions, and starting import jobs.

Every function takes keyword-only arguments; views, the Celery task and the management commands all
call these, so the web page, the job and the command behave the same.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import uuid
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
from django.db.models import Max, ProtectedError, QuerySet
from django.utils import timezone

from .images import ImageRejected, PreparedImage, check_size, clean_relative_path, prepare_image, store_image
from .models import Dataset, DatasetFrozen, Image, ImportJob, Question, Tag
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


def _describe(value) -> str:
    return type(value).__name__ if value is not None else "null"


def parse_line(number: int, text: str) -> Row:
    """One JSONL line checked against the official format; raises LineError with the reason."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LineError(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise LineError(f"expected a JSON object, got {_describe(record)}")
    missing = [key for key in LINE_KEYS if key not in record]
    if missing:
        raise LineError(f"missing keys: {', '.join(missing)}")
    for key in ("question_id", "image_path", "prompt", "ref_answer", "task", "category"):
        if not isinstance(record[key], str):
            raise LineError(f"“{key}” must be a string, not {_describe(record[key])}")
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

def _read_lines(jsonl: str | Path | bytes) -> list[tuple[int, str]]:
    if isinstance(jsonl, bytes):
        data = jsonl
    else:
        try:
            data = Path(jsonl).read_bytes()
        except OSError as exc:
            raise ImportRefused(f"The JSONL file can't be read: {exc}") from None
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or text.strip():
            lines.append((number, text))
    return lines


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
    for number, text in lines:
        if text is None:
            fail(number, "the line is not valid UTF-8")
            continue
        try:
            row = parse_line(number, text)
        except LineError as exc:
            question_id = ""
            match = re.search(r'"question_id"\s*:\s*"([^"]{1,40})"', text)
            if match:
                question_id = match.group(1)
            fail(number, str(exc), question_id)
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
# Import jobs (large files run on a worker; the row is the job)
# --------------------------------------------------------------------------------------------------

def import_dir() -> Path:
    return Path(settings.VAR_DIR) / "imports"


@transaction.atomic
def import_job_start(*, dataset: Dataset, jsonl_upload, images_upload=None, user: User | None) -> ImportJob:
    """Keep the uploaded files on disk, make the job row, and enqueue it once the row is committed."""
    from .tasks import run_import

    dataset.ensure_editable()
    folder = import_dir() / uuid.uuid4().hex
    folder.mkdir(parents=True)
    jsonl_path = folder / "metadata.jsonl"
    with open(jsonl_path, "wb") as out:
        for chunk in jsonl_upload.chunks():
            out.write(chunk)
    images_path = ""
    if images_upload is not None:
        images_path = str(folder / "images.zip")
        with open(images_path, "wb") as out:
            for chunk in images_upload.chunks():
                out.write(chunk)
    job = ImportJob.objects.create(dataset=dataset, jsonl_path=str(jsonl_path), images_path=images_path,
                                   created_by=user)
    run_import.delay_on_commit(job.pk)
    return job


def import_job_run(*, job_id: int) -> None:
    """Run a queued job to its end. A second delivery finds it claimed and returns."""
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING)
    if not claimed:
        return
    job = ImportJob.objects.select_related("dataset", "created_by").get(pk=job_id)

    def progress(processed: int, total: int) -> None:
        ImportJob.objects.filter(pk=job_id).update(processed=processed, total=total)

    try:
        report = alignmmbench_import(dataset=job.dataset, jsonl=job.jsonl_path, images=job.images_path or None,
                                     user=job.created_by, progress=progress)
    except DatasetFrozen as exc:
        _finish(job_id, status=ImportJob.Status.FAILED, error=exc.messages[0])
        return
    except ImportRefused as exc:
        _finish(job_id, status=ImportJob.Status.FAILED, error=str(exc))
        return
    except Exception as exc:
        _finish(job_id, status=ImportJob.Status.FAILED, error=f"The import stopped: {exc}")
        raise
    _finish(job_id, status=ImportJob.Status.DONE, total=report.total, processed=report.total,
            imported=report.imported, unchanged=report.unchanged, failed=report.failed,
            report=[p.as_dict() for p in report.problems])
    folder = Path(job.jsonl_path).parent
    if folder.parent == import_dir():
        shutil.rmtree(folder, ignore_errors=True)  # the uploaded copies are no longer needed


def _finish(job_id: int, **fields) -> None:
    ImportJob.objects.filter(pk=job_id).update(finished_at=timezone.now(), **fields)


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
    count = 0
    for record in alignmmbench_records(dataset=dataset):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count


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


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------

def dataset_create(*, name: str, description: str = "", by: User | None) -> Dataset:
    return Dataset.objects.create(name=name.strip(), description=description.strip(), created_by=by)


@dataclass
class AddResult:
    added: int = 0
    already: int = 0
    renumbered: int = 0


@transaction.atomic
def dataset_add_questions(*, dataset: Dataset, questions: QuerySet, by: User | None) -> AddResult:
    """Copy questions into ``dataset`` with their whole rewrite groups (a rewrite needs its seed's
    reference). A group whose id is taken there by a different seed gets the next free id."""
    dataset.ensure_editable()
    result = AddResult()
    keys = set(questions.exclude(dataset=dataset).values_list("dataset_id", "group").distinct())
    if not keys:
        return result
    source = defaultdict(list)
    wanted = Question.objects.exclude(variant=None).filter(
        dataset_id__in={d for d, _ in keys}, group__in={g for _, g in keys}).order_by("dataset_id", "group", "variant")
    for question in wanted:
        if (question.dataset_id, question.group) in keys:
            source[(question.dataset_id, question.group)].append(question)
    here = defaultdict(dict)
    for question in dataset.questions.exclude(variant=None).filter(group__in={g for _, g in keys}):
        here[question.group][question.variant] = question
    copies: list[Question] = []
    next_index: dict[str, int] = {}
    for (_, group), members in sorted(source.items()):
        seed = members[0]
        target_group = group
        mine = here.get(group)
        if mine and not _same_seed(mine.get(0), seed):
            target_group = _next_free_group(dataset, seed.task, next_index)
            result.renumbered += 1
            mine = None
        for question in members:
            if mine and question.variant in mine:
                result.already += 1
                continue
            copies.append(Question(
                dataset=dataset, image_id=question.image_id, task=question.task, group=target_group,
                variant=question.variant, text=question.text, history=question.history,
                reference=question.reference, origin=question.origin, status=question.status, created_by=by))
        here[target_group] = {q.variant: q for q in members}
    Question.objects.bulk_create(copies, batch_size=CHUNK)
    result.added = len(copies)
    return result


def _same_seed(mine: Question | None, theirs: Question) -> bool:
    return mine is not None and (mine.image_id, mine.task, mine.text, mine.reference, mine.history) == (
        theirs.image_id, theirs.task, theirs.text, theirs.reference, theirs.history)


def _next_free_group(dataset: Dataset, task: str, next_index: dict[str, int]) -> str:
    code = TASKS[task].code
    if code not in next_index:
        next_index[code] = int(Question.next_group(dataset, task)[4:])
    group = f"{code}{next_index[code]:04d}"
    next_index[code] += 1
    return group


class QuestionsInUse(ValueError):
    pass


@transaction.atomic
def dataset_remove_questions(*, dataset: Dataset, questions: QuerySet) -> int:
    """Remove questions; removing a seed removes its whole group (its rewrites share its reference)."""
    dataset.ensure_editable()
    mine = questions.filter(dataset=dataset)
    seed_groups = set(mine.filter(variant=0).values_list("group", flat=True))
    doomed = Question.objects.filter(dataset=dataset).filter(pk__in=mine.values("pk")) | Question.objects.filter(
        dataset=dataset, group__in=seed_groups)
    try:
        count, _ = doomed.delete()
    except ProtectedError:
        raise QuestionsInUse(
            "Some of these questions already have model responses, so they can't be removed: "
            "copy the dataset as a new version and remove them there.") from None
    return count


@transaction.atomic
def dataset_copy_as_version(*, dataset: Dataset, by: User | None) -> Dataset:
    """A new, editable dataset with the same questions; parent points back, version counts up."""
    root = dataset
    while root.parent_id is not None and root.parent is not None:
        root = root.parent
    family_max = Dataset.objects.filter(name__startswith=root.name).aggregate(m=Max("version"))["m"] or 1
    version = max(family_max, dataset.version) + 1
    name = f"{root.name} v{version}"
    while Dataset.objects.filter(name=name).exists():
        version += 1
        name = f"{root.name} v{version}"
    copy = Dataset.objects.create(
        name=name, description=dataset.description, parent=dataset, version=version,
        annotators_per_response=dataset.annotators_per_response, show_peer_scores=dataset.show_peer_scores,
        created_by=by)
    Question.objects.bulk_create([
        Question(dataset=copy, image_id=q.image_id, task=q.task, group=q.group, variant=q.variant, text=q.text,
                 history=q.history, reference=q.reference, origin=q.origin, status=q.status, drift=q.drift,
                 rewrite_run_id=q.rewrite_run_id, created_by_id=q.created_by_id, reviewed_by_id=q.reviewed_by_id)
        for q in dataset.questions.all()
    ], batch_size=CHUNK)
    return copy


# --------------------------------------------------------------------------------------------------
# Questions and images
# --------------------------------------------------------------------------------------------------

@transaction.atomic
def question_create(*, dataset: Dataset, image: Image, task: str, text: str, reference: str = "",
                    history: list | None = None, by: User | None) -> Question:
    """A new seed question (variant 0) in the next free group of its task."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)  # serialise group numbering
    dataset.ensure_editable()
    question = Question(dataset=dataset, image=image, task=task, group=Question.next_group(dataset, task),
                        variant=0, text=text, reference=reference, history=history or [],
                        origin=Question.Origin.HUMAN, status=Question.Status.ACCEPTED, created_by=by)
    question.full_clean(exclude=["rewrite_run"])
    question.save()
    return question


@transaction.atomic
def question_update(*, question: Question, task: str, text: str, reference: str = "",
                    history: list | None = None) -> Question:
    """Edit a question. A seed without rewrites may change task (it moves to a group of the new task);
    a rewrite keeps its seed's task, reference and history, so only its text changes."""
    question.dataset.ensure_editable()
    if question.is_seed:
        if task != question.task:
            if Question.objects.in_group(question).exclude(pk=question.pk).exists():
                raise ValidationError({"task": "This seed has rewrites, which share its task: its task can't change."})
            question.task = task
            question.group = Question.next_group(question.dataset, task)
        question.reference = reference
        question.history = history or []
    question.text = text
    question.full_clean(exclude=["rewrite_run", "image", "dataset"])
    question.save()
    return question


def image_update(*, image: Image, source: str, licence: str, tags: list[str]) -> Image:
    image.source, image.licence = source.strip(), licence.strip()
    image.save(update_fields=["source", "licence"])
    image.tags.set([Tag.objects.get_or_create(name=name)[0] for name in tags])
    return image


def parse_tags(text: str) -> list[str]:
    """'meme, ocr  chart' -> ['chart', 'meme', 'ocr']: lower-case, comma or space separated, slug-safe."""
    names = {re.sub(r"[^\w-]+", "-", part.strip().lower()).strip("-")[:50] for part in re.split(r"[,，\s]+", text)}
    return sorted(name for name in names if name)


def history_from_post(data, prefix: str = "history") -> list[dict]:
    """The dialogue rounds a form posted as history-0-user / history-0-assistant, ...; rounds left
    entirely blank are dropped (that is how a round is removed without JavaScript)."""
    indexes = sorted({int(m.group(1)) for key in data for m in [re.match(rf"^{prefix}-(\d+)-(user|assistant)$", key)]
                      if m})
    rounds = []
    for index in indexes[:100]:
        user = data.get(f"{prefix}-{index}-user", "")
        assistant = data.get(f"{prefix}-{index}-assistant", "")
        if user.strip() or assistant.strip():
            rounds.append({"user": user.strip(), "assistant": assistant.strip()})
    return rounds
