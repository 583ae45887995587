"""Rewrite generation through a real worker: the local Chat Completions server and the tiny causal LM."""

import io
import json

import pytest
from django.core.management import call_command

from annotation.models import Question
from evaluation.models import RewriteRun
from evaluation.rewrites import rewrite_run_create
from tests.chat_server import ChatServer, message_text
from tests.factories import make_dataset, make_endpoint, make_question
from tests.workers import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

REWRITES = {
    "图中有3只猫吗？": ["请问图片里是不是有3只猫？", "图里有三只猫吗？", "图中有4只猫吗？", "图中有 3 只猫吗?"],
    "描述图片。": ["请描述这张图片。", "能介绍一下图片内容吗？"],
}


def rewriter(messages, request) -> str:
    prompt = message_text(messages[-1])
    for seed, rewrites in REWRITES.items():
        if seed in prompt:
            return "```json\n" + json.dumps(rewrites, ensure_ascii=False) + "\n```"
    return "这张图片里是一只猫。"  # an answer instead of rewrites


def stopped(run, timeout=60):
    return wait_for(lambda: RewriteRun.objects.filter(pk=run.pk).exclude(status__in=["queued", "running"]).first(),
                    timeout=timeout, what="the rewrite run")


@pytest.fixture
def seeds(db):
    dataset = make_dataset()
    cats = make_question(dataset=dataset, group="00030000", task="Counting", text="图中有3只猫吗？")
    describe = make_question(dataset=dataset, group="00000000", text="描述图片。")
    make_question(dataset=dataset, group="00000000", variant=1, text="请描述这张图片。")  # an existing variant
    other = make_question(dataset=dataset, group="00020000", task="Recognition", text="这是什么动物？")
    dialogue = make_question(dataset=dataset, group="00110000", task="Coherence", text="然后呢？",
                             history=[{"user": "a", "assistant": "b"}])
    return {"dataset": dataset, "cats": cats, "describe": describe, "other": other, "dialogue": dialogue}


def test_it_proposes_deduplicated_flagged_rewrites_and_is_idempotent(celery_worker, seeds):
    with ChatServer(reply=rewriter) as server:
        endpoint = make_endpoint(name="rw", role="rewriter", base_url=server.base_url, concurrency=2)
        run = stopped(rewrite_run_create(endpoint=endpoint, dataset=seeds["dataset"], per_seed=4))
        assert (run.status, run.total, run.done, run.failed) == ("done", 3, 2, 1), "dialogues are never offered"
        cats = Question.objects.filter(group="00030000").proposed()
        # "图中有 3 只猫吗?" is the seed after normalising spaces and punctuation: dropped.
        assert sorted(cats.values_list("text", flat=True)) == sorted(REWRITES["图中有3只猫吗？"][:3])
        flagged = {q.text: q.drift for q in cats}
        assert flagged["图中有4只猫吗？"] and flagged["图中有4只猫吗？"][0]["kind"] == "number"
        assert flagged["图里有三只猫吗？"] == [] and flagged["请问图片里是不是有3只猫？"] == []
        describe = Question.objects.filter(group="00000000").proposed()
        assert list(describe.values_list("text", flat=True)) == ["能介绍一下图片内容吗？"]
        assert run.duplicates_dropped == 2 and run.proposed == 4
        assert run.report[0]["question_id"] == "00020000-0" and "这张图片里是一只猫" in run.report[0]["raw"]
        assert not Question.objects.filter(group="00110000").proposed().exists()

        again = stopped(rewrite_run_create(endpoint=endpoint, dataset=seeds["dataset"], per_seed=4))
        assert again.proposed == 0 and again.duplicates_dropped == 6, "regenerating adds no duplicates"
        assert Question.objects.proposed().count() == 4


def test_it_generates_with_the_tiny_causal_lm_through_transformers(celery_worker, seeds, tiny_causal_lm):
    endpoint = make_endpoint(name="tiny-rw", role="rewriter", backend="transformers", base_url="", model_name="",
                             model_path=str(tiny_causal_lm), max_new_tokens=16, batch_size=4, device="cpu",
                             dtype="float32")
    run = stopped(rewrite_run_create(endpoint=endpoint, dataset=seeds["dataset"]), timeout=120)
    # Random weights rarely write a list: each seed is either proposals or a clear per-seed error.
    assert run.status == "done" and run.done + run.failed == 3
    assert len(run.report) == run.failed and all(entry["error"] for entry in run.report)


def test_it_runs_from_the_command_line(celery_worker, seeds):
    with ChatServer(reply=rewriter) as server:
        make_endpoint(name="cli-rw", role="rewriter", base_url=server.base_url)
        out, err = io.StringIO(), io.StringIO()
        # The run completes (exit 0) although one seed's reply was an answer, not rewrites: that seed
        # is reported on stderr and counted as failed.
        call_command("generate_rewrites", "--endpoint", "cli-rw", "--dataset", seeds["dataset"].name,
                     "--per-seed", "4", "--wait", stdout=out, stderr=err)
    lines = out.getvalue().strip().splitlines()
    assert lines[0] == f"rewrite_run_id={RewriteRun.objects.get().pk} seeds=3"
    assert lines[-1] == "seeds=2 failed=1 proposed=4 duplicates_dropped=2"
    assert "00020000-0" in err.getvalue()


def test_it_refuses_a_frozen_dataset(seeds):
    seeds["dataset"].freeze()
    endpoint = make_endpoint(name="rw", role="rewriter")
    with pytest.raises(Exception, match="frozen"):
        rewrite_run_create(endpoint=endpoint, dataset=seeds["dataset"])


@pytest.mark.django_db(transaction=False)
def test_it_generates_for_hand_picked_seeds_only(client, curator, seeds, django_capture_on_commit_callbacks):
    from django.urls import reverse

    endpoint = make_endpoint(name="rw", role="rewriter")
    client.force_login(curator)
    html = client.get(reverse("evaluation:rewrite_run_create"), {"dataset": seeds["dataset"].pk}).content.decode()
    assert "图中有3只猫吗？" in html and "然后呢" not in html, "dialogues are never offered"
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("evaluation:rewrite_run_create"), {
            "endpoint": endpoint.pk, "dataset": seeds["dataset"].pk, "per_seed": 3,
            "seed": [seeds["cats"].pk, seeds["dialogue"].pk]})
    run = RewriteRun.objects.get()
    assert response.status_code == 302 and run.seed_ids == [seeds["cats"].pk] and len(callbacks) == 1
