"""import_human_scores: scores made elsewhere, checked like the scoring form, reported per line."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from annotation.models import HumanScore, ScoringItem
from annotation.ratings import human_scores_import
from evaluation.models import Response
from tests.factories import make_scoring_dataset, make_user


@pytest.fixture
def answers(db):
    dataset, responses = make_scoring_dataset(name="elsewhere", questions=2, models=1, annotators_per_response=2)
    return responses[0].run, responses


def lines(*records) -> list[str]:
    return [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]


def qid(response: Response) -> str:
    return response.question.question_id


def test_it_imports_scores_and_creates_inactive_annotators(answers):
    run, responses = answers
    existing = make_user(username="anna", role="annotator")
    report = human_scores_import(run=run, lines=lines(
        {"question_id": qid(responses[0]), "annotator": "anna", "score": 8, "rationale": "好"},
        {"question_id": qid(responses[0]), "annotator": "表格-王", "score": "9"},
        {"question_id": qid(responses[1]), "annotator": "ext_li", "score": 2, "rationale": "答非所问"},
    ))
    assert (report.imported, report.failed, report.total) == (3, 0, 3)
    assert HumanScore.objects.get(response=responses[0], annotator=existing).rationale == "好"
    new = User.objects.get(username="ext_li")
    assert not new.is_active and not new.has_usable_password()
    assert list(new.groups.values_list("name", flat=True)) == ["annotator"]
    first = Response.objects.get(pk=responses[0].pk)
    assert (first.human_count, first.human_sum) == (2, 17)
    item = ScoringItem.objects.get(pk=responses[0].pk)
    assert (item.scores, item.full) == (2, True), "the scoring queue counts imported scores"
    assert not ScoringItem.objects.get(pk=responses[1].pk).full


def test_it_reports_each_bad_line_and_keeps_the_good_ones(answers):
    run, responses = answers
    report = human_scores_import(run=run, lines=lines(
        "{not json",
        {"annotator": "x", "score": 5},
        {"question_id": qid(responses[0]), "score": 5},
        {"question_id": qid(responses[0]), "annotator": "bad name!", "score": 5},
        {"question_id": qid(responses[0]), "annotator": "li", "score": 11},
        {"question_id": qid(responses[0]), "annotator": "li", "score": 7.0},
        {"question_id": qid(responses[0]), "annotator": "li", "score": True},
        {"question_id": qid(responses[0]), "annotator": "li", "score": 2},  # below 4 needs a rationale
        {"question_id": qid(responses[0]), "annotator": "li", "score": 5, "rationale": 3},
        {"question_id": "9999999-0", "annotator": "li", "score": 5},
        {"question_id": qid(responses[0]), "annotator": "li", "score": 6},
        {"question_id": qid(responses[0]), "annotator": "li", "score": 7},
        "",
    ))
    assert report.imported == 1
    by_line = {p.line: p.reason for p in report.problems}
    assert sorted(by_line) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12]
    assert "invalid JSON" in by_line[1] and "question_id" in by_line[2] and "annotator" in by_line[3]
    assert "1 to 10" in by_line[5] and "1 to 10" in by_line[6] and "1 to 10" in by_line[7]
    assert "rationale" in by_line[8] and "rationale" in by_line[9]
    assert "no answer" in by_line[10] and "twice" in by_line[12]
    assert HumanScore.objects.get().score == 6


def test_it_stores_nothing_when_no_line_imports(answers):
    run, responses = answers
    report = human_scores_import(run=run, lines=lines(
        {"question_id": qid(responses[0]), "annotator": "ghost", "score": 0},
        {"question_id": "nope", "annotator": "ghost2", "score": 5},
    ))
    assert report.imported == 0 and report.failed == 2
    assert not HumanScore.objects.exists()
    assert not User.objects.filter(username__startswith="ghost").exists()


def test_a_second_import_of_the_same_file_changes_nothing(answers):
    run, responses = answers
    record = {"question_id": qid(responses[0]), "annotator": "li", "score": 6, "rationale": "还行"}
    human_scores_import(run=run, lines=lines(record))
    again = human_scores_import(run=run, lines=lines(record, {**record, "score": 3, "rationale": "差"}))
    assert (again.imported, again.unchanged, again.failed) == (0, 1, 1)
    assert "already scored" in again.problems[0].reason
    assert HumanScore.objects.get().score == 6


def test_the_command_prints_the_report_and_fails_on_bad_lines(answers, tmp_path, capsys):
    run, responses = answers
    path = tmp_path / "scores.jsonl"
    path.write_text("\n".join(lines({"question_id": qid(responses[0]), "annotator": "li", "score": 9},
                                    {"question_id": qid(responses[1]), "annotator": "li", "score": 99})),
                    encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_human_scores", str(path), "--run", str(run.pk))
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "imported 1, unchanged 0, failed 1 (of 2 lines)" in out and "line 2" in out
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("import_human_scores", str(empty), "--run", str(run.pk))
    with pytest.raises(CommandError, match="No inference run"):
        call_command("import_human_scores", str(path), "--run", "987654")
