"""AlignMMBench import and export: the real released file, bad lines, images, the command, the job."""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import call_command

from annotation.alignmmbench import (
    ImportRefused,
    alignmmbench_export,
    alignmmbench_export_csv,
    alignmmbench_export_images,
    alignmmbench_import,
)
from annotation.import_jobs import import_job_run
from annotation.models import Image, ImportJob, Question
from annotation.tasks_catalog import TASKS
from tests.factories import make_dataset, png_bytes

# The table in benchmark.md: rows and seed groups per task.
TABLE = {
    "Description": (948, 158), "Recognition": (600, 100), "Counting": (366, 61), "OCR": (300, 50),
    "Meme": (342, 57), "Knowledge": (358, 60), "Reasoning": (300, 50), "Chart": (360, 60),
    "Problem": (354, 59), "Comparison": (359, 60), "Writing": (420, 70), "Coherence": (181, 181),
    "Incoherence": (90, 90),
}


def record(question_id: str = "00000000-0", **fields) -> dict:
    task = fields.pop("task", "Description")
    category = fields.pop("category", None) or str(TASKS[task].category)
    return {"question_id": question_id, "image_path": fields.pop("image_path", "images/a.png"),
            "history": fields.pop("history", []), "prompt": fields.pop("prompt", "描述图片。"),
            "ref_answer": fields.pop("ref_answer", "一张图。"), "task": task,
            "category": category, **fields}


def jsonl(*lines) -> bytes:
    return "\n".join(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)
                     for line in lines).encode() + b"\n"


@pytest.fixture
def images_dir(tmp_path) -> Path:
    folder = tmp_path / "imgs" / "images"
    folder.mkdir(parents=True)
    for seed, name in enumerate(["a.png", "b.png", "c.png"]):
        (folder / name).write_bytes(png_bytes(seed=100 + seed))
    return tmp_path / "imgs"


def test_it_imports_the_released_file_and_round_trips_it(db, released_metadata, standin_images, tmp_path):
    dataset = make_dataset(name="alignmmbench")
    report = alignmmbench_import(dataset=dataset, jsonl=released_metadata, images=standin_images)
    assert (report.imported, report.unchanged, report.failed) == (4978, 0, 0), report.summary()

    questions = Question.objects.filter(dataset=dataset)
    rows = Counter(questions.values_list("task", flat=True))
    seeds = Counter(questions.seeds().values_list("task", flat=True))
    assert {task: (rows[task], seeds[task]) for task in TABLE} == TABLE
    assert questions.values("group").distinct().count() == 1056
    assert Image.objects.filter(questions__dataset=dataset).distinct().count() == 1054
    sizes = set(Image.objects.values_list("width", flat=True)) | set(Image.objects.values_list("height", flat=True))
    assert min(sizes) == 48 and max(sizes) == 5000

    released = [json.loads(line) for line in released_metadata.read_text().splitlines() if line.strip()]
    dialogues = {r["question_id"]: r["history"] for r in released if r["history"]}
    assert len(dialogues) == 271
    stored = {q.question_id: q.history for q in questions.dialogues()}
    assert stored == dialogues  # histories intact, turn by turn, whitespace and all
    # The reference lives once, on the seed.
    assert not questions.exclude(variant=0).exclude(reference="").exists()

    again = alignmmbench_import(dataset=dataset, jsonl=released_metadata, images=standin_images)
    assert (again.imported, again.unchanged, again.failed) == (0, 4978, 0)
    assert questions.count() == 4978 and Image.objects.count() == 1054

    out = io.StringIO()
    assert alignmmbench_export(dataset=dataset, out=out) == 4978
    exported = [json.loads(line) for line in out.getvalue().splitlines()]
    key = lambda r: r["question_id"]  # noqa: E731
    assert sorted(exported, key=key) == sorted(released, key=key)

    archive = io.BytesIO()
    assert alignmmbench_export_images(dataset=dataset, out=archive) == 1054
    names = set(zipfile.ZipFile(archive).namelist())
    assert names == {r["image_path"] for r in released}


def test_it_reports_each_bad_line_by_number_and_reason(db, images_dir):
    lines = jsonl(
        record("00000000-0"),
        "{not json",
        {k: v for k, v in record("00000001-0").items() if k not in ("prompt", "task")},
        record("00000002-0", task="Poetry", category="Perception & Understanding"),
        record("00110000-0", task="Coherence", history=[{"user": "你好"}]),
        record("00110001-0", task="Coherence", history="not a list"),
        record("00000000-0", prompt="另一个问题"),
        record("00000000-1"),
        "",
        record("00020000-0", task="Recognition", history=[{"user": "a", "assistant": "b"}]),
        record("00000003-0", prompt="   "),
        "[1, 2]",
    )
    report = alignmmbench_import(dataset=make_dataset(), jsonl=lines, images=images_dir)
    reasons = {p.line: p.reason for p in report.problems}
    assert report.imported == 2 and report.total == 11
    assert "invalid JSON" in reasons[2]
    assert reasons[3] == "missing keys: prompt, task"
    assert reasons[4].startswith("unknown task “Poetry”")
    assert "history must be a list" in reasons[5] and "history must be a list" in reasons[6]
    assert reasons[7] == "duplicate question_id 00000000-0 with different content (first on line 1)"
    assert "Only the dialogue tasks" in reasons[10]
    assert "can't be empty" in reasons[11]
    assert "expected a JSON object" in reasons[12]
    assert set(reasons) == {2, 3, 4, 5, 6, 7, 10, 11, 12}
    assert report.problems[2].question_id == "00000002-0"  # found even in a line that failed


def test_it_fails_only_the_rows_of_a_missing_or_bad_image(db, images_dir):
    (images_dir / "images" / "bad.png").write_bytes(b"not an image")
    lines = jsonl(record("00000000-0"), record("00000000-1", prompt="请描述。"),
                  record("00000001-0", image_path="images/missing.png"),
                  record("00000001-1", image_path="images/missing.png", prompt="再描述。"),
                  record("00000002-0", image_path="images/bad.png"),
                  record("00000003-0", image_path="../etc/passwd"))
    report = alignmmbench_import(dataset=make_dataset(), jsonl=lines, images=images_dir)
    reasons = {p.line: p.reason for p in report.problems}
    assert report.imported == 2
    assert reasons[3] == reasons[4] == "image images/missing.png is missing from the images folder or zip"
    assert reasons[5].startswith("image images/bad.png was rejected: This is not an image")
    assert "plain relative path" in reasons[6]


def test_it_fails_rows_that_disagree_with_their_seed(db, images_dir):
    lines = jsonl(record("00000000-0"), record("00000000-1", ref_answer="另一个答案"),
                  record("00000000-2", image_path="images/b.png"), record("00000000-3", prompt="改写"),
                  record("00000005-2"),
                  record("00000009-0", task="Recognition"))
    report = alignmmbench_import(dataset=make_dataset(), jsonl=lines, images=images_dir)
    reasons = {p.line: p.reason for p in report.problems}
    assert reasons[2] == "disagrees with its seed 00000000-0 (line 1) on the reference answer"
    assert reasons[3] == "disagrees with its seed 00000000-0 (line 1) on the image"
    assert reasons[5] == "its seed 00000005-0 is neither in this file nor in the dataset"
    assert "task code 0000 does not match task Recognition" in reasons[6]
    assert report.imported == 2
    rewrite = Question.objects.get(group="00000000", variant=3)
    assert rewrite.reference == "" and rewrite.reference_answer == "一张图。"


def test_it_is_idempotent_and_refuses_changed_content_on_reimport(db, images_dir):
    dataset = make_dataset()
    alignmmbench_import(dataset=dataset, jsonl=jsonl(record("00000000-0"), record("00000000-1", prompt="b")),
                        images=images_dir)
    report = alignmmbench_import(dataset=dataset, images=images_dir, jsonl=jsonl(
        record("00000000-0"), record("00000000-1", prompt="changed"), record("00000000-2", prompt="new")))
    assert (report.imported, report.unchanged, report.failed) == (1, 1, 1)
    assert report.problems[0].reason == "00000000-1 is already in the dataset with a different question text"
    assert Question.objects.get(group="00000000", variant=1).text == "b"


def test_it_reads_images_from_a_zip_with_a_wrapping_folder(db, tmp_path):
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("release/images/a.png", png_bytes(seed=7))
    report = alignmmbench_import(dataset=make_dataset(), jsonl=jsonl(record()), images=archive)
    assert report.imported == 1 and Image.objects.get().original_name == "images/a.png"


def test_it_refuses_to_import_into_a_frozen_dataset(db, images_dir):
    with pytest.raises(ImportRefused, match="frozen"):
        alignmmbench_import(dataset=make_dataset(frozen=True), jsonl=jsonl(record()), images=images_dir)
    assert not Question.objects.exists()


def test_it_exports_csv_with_the_official_columns(db, images_dir):
    dataset = make_dataset()
    history = [{"user": "第一轮", "assistant": "回答"}]
    alignmmbench_import(dataset=dataset, images=images_dir, jsonl=jsonl(
        record("00110000-0", task="Coherence", history=history)))
    out = io.StringIO()
    alignmmbench_export_csv(dataset=dataset, out=out)
    header, row = out.getvalue().splitlines()
    assert header == "question_id,image_path,history,prompt,ref_answer,task,category"
    assert row.startswith("00110000-0,images/a.png,") and "第一轮" in row


def test_the_commands_import_and_export_with_a_summary(db, images_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(record("00000000-0"), record("00000000-1", prompt="b"), "oops"))
    out = io.StringIO()
    call_command("import_alignmmbench", str(source), "--images", str(images_dir), "--dataset", "cmd", stdout=out)
    text = out.getvalue()
    assert "imported 2, unchanged 0, failed 1 (of 3 lines)" in text and "line 3: invalid JSON" in text
    call_command("export_alignmmbench", "--dataset", "cmd", "--out", str(tmp_path / "out.jsonl"),
                 "--images-zip", str(tmp_path / "out.zip"), stdout=io.StringIO())
    assert [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [
        record("00000000-0"), record("00000000-1", prompt="b")]
    assert zipfile.ZipFile(tmp_path / "out.zip").namelist() == ["images/a.png"]
    again = io.StringIO()
    call_command("import_alignmmbench", str(source), "--images", str(images_dir), "--dataset", "cmd", stdout=again)
    assert "imported 0, unchanged 2, failed 1" in again.getvalue()


def test_an_import_job_runs_once_and_records_its_report(db, images_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(record(), "oops"))
    job = ImportJob.objects.create(dataset=make_dataset(), jsonl_path=str(source), images_path=str(images_dir))
    import_job_run(job_id=job.pk)
    import_job_run(job_id=job.pk)  # a second delivery finds it done
    job.refresh_from_db()
    assert (job.status, job.imported, job.failed, job.processed, job.total) == ("done", 1, 1, 2, 2)
    assert job.report == [{"line": 2, "question_id": "", "reason": job.report[0]["reason"]}]
    assert Question.objects.count() == 1


def test_an_import_job_into_a_frozen_dataset_fails_clearly(db, images_dir, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(jsonl(record()))
    job = ImportJob.objects.create(dataset=make_dataset(frozen=True), jsonl_path=str(source))
    import_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "frozen" in job.error

