"""`manage.py import_responses`: clear errors, nothing stored from a file with nothing to import."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

from evaluation.models import InferenceRun, Response
from tests.factories import make_dataset, make_endpoint, make_question

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset():
    dataset = make_dataset(name="d")
    make_question(dataset=dataset, group="00000000", text="问题")
    make_question(dataset=dataset, group="00000001", text="问题2")
    make_endpoint(name="vlm")
    make_endpoint(name="judge", role="critic")
    return dataset


def run_command(path, *args):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_responses", str(path), "--endpoint", "vlm", "--dataset", "d", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(tmp_path, *records) -> str:
    path = tmp_path / "answers.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records))
    return path


@pytest.mark.parametrize("lines", [(), ("",), ("not json", {"question_id": "nope-0", "predict": "x"})])
def test_a_file_with_nothing_to_import_makes_no_run(dataset, tmp_path, lines):
    with pytest.raises(CommandError, match="Nothing imported"):
        run_command(write(tmp_path, *lines))
    assert not InferenceRun.objects.exists()


def test_answers_are_imported_for_vlm_endpoints_only(dataset, tmp_path):
    path = write(tmp_path, {"question_id": "00000000-0", "predict": "答"})
    with pytest.raises(CommandError, match="judge is a critic"):
        call_command("import_responses", str(path), "--endpoint", "judge", "--dataset", "d", stdout=io.StringIO())
    with pytest.raises(CommandError, match="Unknown endpoint 'nope'"):
        call_command("import_responses", str(path), "--endpoint", "nope", "--dataset", "d", stdout=io.StringIO())
    assert not InferenceRun.objects.exists()


def test_a_partial_import_is_completed_with_run(dataset, tmp_path):
    path = write(tmp_path, {"question_id": "00000000-0", "predict": "甲"}, {"question_id": "00000001-0"})
    with pytest.raises(SystemExit) as exit_:
        run_command(path)
    assert exit_.value.code == 1
    run = InferenceRun.objects.get()
    path = write(tmp_path, {"question_id": "00000000-0", "predict": "甲"}, {"question_id": "00000001-0", "predict": "乙"})
    out, _ = run_command(path, "--run", str(run.pk))
    assert out.splitlines() == [f"run_id={run.pk}", "imported=1 unchanged=1 failed=0"]
    assert InferenceRun.objects.count() == 1 and Response.objects.filter(run=run).count() == 2
