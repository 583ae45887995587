"""Critic runs through a real worker: a local Chat Completions judge, and the tiny causal LM."""

import io
import json
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evaluation import critics
from evaluation.models import CriticRun, CriticScore
from tests.chat_server import ChatServer, message_text
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def answered_run(count: int):
    dataset = make_dataset()
    run = make_run(endpoint=make_endpoint(name="vlm"), dataset=dataset, status="done")
    for i in range(count):
        question = make_question(dataset=dataset, group=f"0000{i:04d}", text=f"问题{i}")
        make_response(run=run, question=question, text=f"回答{i}")
    return run


def judge(messages, request) -> str:
    """Rates answer i as (i % 10) + 1, as JSON; answers mentioning 回答7 get prose with no rating."""
    prompt = message_text(messages[-1])
    number = int(re.search(r"回答(\d+)", prompt).group(1))
    if number == 7:
        return "这个回答还可以，但我无法给出分数。"
    return json.dumps({"Rating": number % 10 + 1, "Reason": f"理由{number}"}, ensure_ascii=False)


def stopped(run: CriticRun, timeout: float = 60) -> CriticRun:
    return wait_for(lambda: CriticRun.objects.filter(pk=run.pk).exclude(status__in=["queued", "running"]).first(),
                    timeout=timeout, what=f"critic run {run.pk} to stop")


def test_it_scores_parses_and_keeps_unparsed_replies(celery_worker):
    run = answered_run(10)
    with ChatServer(reply=judge) as server:
        server.fail_next(1, "429")
        server.fail_next(1, "500")
        server.fail_next(1, "slow")
        server.fail_next(1, "malformed")
        critic = make_endpoint(name="judge", role="critic", base_url=server.base_url, concurrency=4, max_retries=3)
        critic_run = stopped(critics.critic_run_create(critic=critic, template=critics.critic_template_default(),
                                                        inference_runs=[run], max_retries=2))
    assert (critic_run.status, critic_run.done, critic_run.unparsed, critic_run.failed) == ("done", 9, 1, 0)
    scores = {s.response.text: s for s in CriticScore.objects.filter(critic_run=critic_run).select_related("response")}
    assert scores["回答3"].score == 4 and scores["回答3"].critique == "理由3" and scores["回答3"].parse_status == "parsed"
    assert 1 <= scores["回答3"].expected_score <= 10 and scores["回答3"].expected_spread > 0
    unparsed = scores["回答7"]
    assert unparsed.score is None and unparsed.parse_status == "unparsed" and unparsed.attempts == 3
    assert "无法给出分数" in unparsed.raw_output
    assert "回答3" in scores["回答3"].prompt and "问题3" in scores["回答3"].prompt


def test_it_recovers_when_a_retry_parses(celery_worker):
    run = answered_run(3)
    calls = {"n": 0}

    def moody(messages, request):
        calls["n"] += 1
        return "我觉得不错" if calls["n"] == 1 else '```json\n{"Reason": "好", "Rating": "8"}\n```'

    with ChatServer(reply=moody) as server:
        critic = make_endpoint(name="judge", role="critic", base_url=server.base_url, concurrency=1)
        critic_run = stopped(critics.critic_run_create(critic=critic, template=critics.critic_template_default(),
                                                        inference_runs=[run]))
    rows = list(CriticScore.objects.filter(critic_run=critic_run).order_by("response_id"))
    assert [r.score for r in rows] == [8, 8, 8]
    assert rows[0].attempts == 2 and rows[0].parse_status == "recovered"


def test_it_records_a_dead_critic_as_failed_and_retries_on_request(celery_worker):
    run = answered_run(2)
    critic = make_endpoint(name="dead", role="critic", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2)
    critic_run = stopped(critics.critic_run_create(critic=critic, template=critics.critic_template_default(),
                                                    inference_runs=[run]))
    assert (critic_run.done, critic_run.failed) == (0, 2)
    assert all(s.error for s in CriticScore.objects.filter(critic_run=critic_run))
    with ChatServer(reply=lambda m, r: '{"Rating": 6, "Reason": "ok"}') as server:
        critic.base_url = server.base_url
        critic.save()
        assert critics.critic_run_retry(run=critic_run) == 2
        critic_run = stopped(critic_run)
    assert (critic_run.done, critic_run.failed, critic_run.status) == (2, 0, "done")


def test_it_scores_with_the_tiny_causal_lm_through_transformers(celery_worker, tiny_causal_lm):
    run = answered_run(3)
    critic = make_endpoint(name="tiny", role="critic", backend="transformers", base_url="", model_name="",
                           model_path=str(tiny_causal_lm), max_new_tokens=12, batch_size=2, device="cpu",
                           dtype="float32")
    critic_run = stopped(critics.critic_run_create(critic=critic, template=critics.critic_template_default(),
                                                    inference_runs=[run], max_retries=0), timeout=120)
    rows = list(CriticScore.objects.filter(critic_run=critic_run))
    assert critic_run.status == "done" and len(rows) == 3
    for row in rows:
        # Random weights: parsed or unparsed as it happens, but an expected score every time.
        assert row.parse_status in ("parsed", "recovered", "unparsed")
        assert row.expected_score is not None and 1 <= row.expected_score <= 10
    assert critic_run.done + critic_run.unparsed == 3


def test_it_runs_from_the_command_line_and_round_trips_critiques(celery_worker, tmp_path):
    run = answered_run(10)
    with ChatServer(reply=judge) as server:
        call_command("add_endpoint", "cli-judge", "--role", "critic", "--backend", "openai", "--base-url",
                     server.base_url, "--model", "judge", stdout=io.StringIO())
        out = io.StringIO()
        call_command("run_critic", "--critic", "cli-judge", "--run", str(run.pk), "--retries", "0", "--wait",
                     stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert lines[0].startswith("critic_run_id=") and lines[-1] == "scored=9 unparsed=1 failed=0"
    critic_run_id = int(lines[0].split("=")[1])
    path = tmp_path / "critiques.jsonl"
    call_command("export_critiques", "--critic-run", str(critic_run_id), "--out", str(path), stdout=io.StringIO())
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 10
    unparsed = [r for r in records if r["Rating"] is None]
    assert len(unparsed) == 1 and unparsed[0]["parse_status"] == "unparsed"
    out = io.StringIO()
    call_command("import_critiques", str(path), "--run", str(run.pk), "--critic", "released-runner", stdout=out)
    imported = CriticRun.objects.get(name="released-runner")
    assert (imported.done, imported.unparsed) == (9, 1)
    original = {s.response_id: s.score for s in CriticScore.objects.filter(critic_run_id=critic_run_id)}
    again = {s.response_id: s.score for s in CriticScore.objects.filter(critic_run=imported)}
    assert original == again


@pytest.mark.django_db
def test_the_import_command_stores_nothing_when_no_line_can_be_read(tmp_path):
    run = answered_run(2)
    path = tmp_path / "critiques.jsonl"
    path.write_text('{"question_id": "99999999-0", "Rating": 5}\nnot json\n', encoding="utf-8")
    err = io.StringIO()

    with pytest.raises(CommandError, match="Nothing imported"):
        call_command("import_critiques", str(path), "--run", str(run.pk), "--critic", "elsewhere", stderr=err)

    assert "line 1: question_id 99999999-0 has no answer" in err.getvalue() and "line 2: invalid JSON" in err.getvalue()
    assert not CriticRun.objects.exists()
