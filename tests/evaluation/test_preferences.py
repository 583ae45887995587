"""Preference pairs: sources, filters, splits by seed group, the four formats, images, the command."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotation.models import HumanScore
from evaluation import preferences
from evaluation.models import Response
from tests.factories import (
    make_critic_run,
    make_critic_score,
    make_dataset,
    make_endpoint,
    make_image,
    make_question,
    make_response,
    make_run,
    make_user,
)

pytestmark = pytest.mark.django_db


def _score(response: Response, scores: list[int]) -> None:
    for i, score in enumerate(scores):
        user = make_user(username=f"ann-{response.pk}-{i}-{score}") if i >= 3 else _annotator(i)
        HumanScore.objects.create(response=response, annotator=user, score=score)
    Response.objects.filter(pk=response.pk).refresh_human_stats()


def _annotator(i: int):
    from django.contrib.auth.models import User

    return User.objects.filter(username=f"ann{i}").first() or make_user(username=f"ann{i}", role="annotator")


@pytest.fixture
def bench():
    """Two seeds (one with two rewrites, one a dialogue), three models with distinct answers."""
    dataset = make_dataset(name="prefs")
    image = make_image(seed=3)
    seed = make_question(dataset=dataset, image=image, task="Description", group="01000001", text="描述图片。")
    rewrites = [make_question(dataset=dataset, image=image, task="Description", group="01000001", variant=v,
                              text=f"请描述图片 {v}。") for v in (1, 2)]
    dialogue = make_question(dataset=dataset, image=make_image(seed=4), task="Coherence", group="00110001",
                             text="那它是什么颜色？", history=[{"user": "图里有什么？", "assistant": "一只猫。"}])
    questions = [seed, *rewrites, dialogue]
    runs = [make_run(endpoint=make_endpoint(name=f"m{m}"), dataset=dataset) for m in range(3)]
    responses = {(m, q.pk): make_response(run=runs[m], question=q, text=f"模型{m}对{q.pk}的回答")
                 for m in range(3) for q in questions}
    return dataset, questions, runs, responses


def _options(dataset, *sources, **kw) -> preferences.Options:
    return preferences.Options(dataset=dataset, sources=[preferences.Source.parse(s) for s in sources], **kw)


def test_human_scores_pair_two_responses_to_one_question_by_margin(bench):
    dataset, questions, runs, responses = bench
    for q in questions:
        _score(responses[0, q.pk], [9, 8])
        _score(responses[1, q.pk], [6, 6])
        _score(responses[2, q.pk], [3, 2])
    pairs = list(preferences.pairs(_options(dataset, "human-scores", min_margin=2)))
    # Per question: 8.5 vs 6 (2.5), 8.5 vs 2.5 (6), 6 vs 2.5 (3.5): three pairs each.
    assert len(pairs) == 3 * len(questions)
    by_id = Response.objects.in_bulk()
    for pair in pairs:
        chosen, rejected = by_id[pair.chosen_id], by_id[pair.rejected_id]
        assert chosen.question_id == rejected.question_id == pair.question_id
        assert chosen.human_sum / chosen.human_count - rejected.human_sum / rejected.human_count == pair.margin
        assert pair.margin >= 2 and pair.annotator_count == 2 and pair.source == "human-scores"
    assert len(list(preferences.pairs(_options(dataset, "human-scores", min_margin=3)))) == 2 * len(questions)
    capped = list(preferences.pairs(_options(dataset, "human-scores", per_question=1)))
    assert len(capped) == len(questions) and all(p.margin == 6 for p in capped)


def test_agreement_filter_drops_pairs_the_annotators_split_on(bench):
    dataset, questions, runs, responses = bench
    q = questions[0]
    _score(responses[0, q.pk], [10, 2])  # mean 6, but one annotator put it at the bottom
    _score(responses[1, q.pk], [3, 3])
    [pair] = preferences.pairs(_options(dataset, "human-scores", min_margin=2, min_agreement=0.5))
    assert pair.agreement == 0.5
    assert list(preferences.pairs(_options(dataset, "human-scores", min_margin=2, min_agreement=0.75))) == []


def test_identical_answers_are_one_answer(bench):
    dataset, questions, runs, responses = bench
    q = questions[0]
    Response.objects.filter(pk=responses[1, q.pk].pk).update(text=responses[0, q.pk].text)
    _score(responses[0, q.pk], [9])
    _score(responses[1, q.pk], [2])
    _score(responses[2, q.pk], [5])
    kept = list(preferences.pairs(_options(dataset, "human-scores", min_margin=2)))
    assert [(p.chosen_id, p.rejected_id) for p in kept] == [(responses[0, q.pk].pk, responses[2, q.pk].pk)]
    both = list(preferences.pairs(_options(dataset, "human-scores", min_margin=2, dedupe=False)))
    assert len(both) == 3


def test_critic_pairs_optionally_only_where_humans_agree(bench):
    dataset, questions, runs, responses = bench
    critic_run = make_critic_run(runs=runs)
    for q in questions:
        make_critic_score(critic_run=critic_run, response=responses[0, q.pk], score=9)
        make_critic_score(critic_run=critic_run, response=responses[1, q.pk], score=2)
    q = questions[0]
    _score(responses[0, q.pk], [2])  # the humans disagree with the critic on this question
    _score(responses[1, q.pk], [8])
    all_pairs = list(preferences.pairs(_options(dataset, f"critic-run:{critic_run.pk}")))
    assert len(all_pairs) == len(questions) and all(p.margin == 7 for p in all_pairs)
    agreeing = list(preferences.pairs(_options(dataset, f"critic-run:{critic_run.pk}", critic_agrees=True)))
    assert {p.question_id for p in agreeing} == {x.pk for x in questions[1:]}


def test_unknown_sources_and_runs_are_clear_errors(bench):
    dataset = bench[0]
    for text in ("votes", "critic-run:abc", "critic-run:²", "pair-run:", "critic-run:99999999999999999"):
        with pytest.raises(preferences.PreferenceError):
            preferences.Source.parse(text)
    with pytest.raises(preferences.PreferenceError, match="no critic run 999"):
        list(preferences.pairs(_options(dataset, "critic-run:999")))


def _all_scored(bench):
    dataset, questions, runs, responses = bench
    for q in questions:
        _score(responses[0, q.pk], [9])
        _score(responses[2, q.pk], [2])
    return dataset


@pytest.mark.parametrize("fmt", preferences.FORMATS)
def test_each_format_round_trips_through_datasets(bench, tmp_path, fmt):
    from datasets import load_dataset

    dataset = _all_scored(bench)
    written = preferences.export(_options(dataset, "human-scores"), fmt=fmt, out=tmp_path / "p.jsonl",
                                 images=tmp_path / "images.zip")
    assert written.rows == {"train": 4, "validation": 0} and written.images == 2
    rows = load_dataset("json", data_files=str(tmp_path / "p.jsonl"), split="train")
    assert len(rows) == 4
    names = set(zipfile.ZipFile(tmp_path / "images.zip").namelist())
    assert len(names) == 2
    for row in rows:
        assert {"source", "margin", "annotator_count", "question_id"} <= set(row)
        image = row["images"][0] if fmt == "trl" else row["image"]
        assert image in names
    if fmt == "trl":
        row = rows[0]
        assert row["prompt"][-1]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
        assert row["chosen"][0]["content"][0]["text"].startswith("模型0")
        assert row["rejected"][0]["content"][0]["text"].startswith("模型2")
    if fmt == "rlaif-v":
        assert set(rows.column_names) >= {"ds_name", "image", "question", "chosen", "rejected", "origin_dataset",
                                          "origin_split", "idx", "image_path"}
    if fmt == "llava-rlhf":
        for row in rows:
            preferred = row["output_1"] if row["preference"] == 1 else row["output_2"]
            assert preferred["value"].startswith("模型0")
    if fmt == "povid":
        for row in rows:
            assert row["conversations"][-1]["value"].startswith("模型0")
            assert row["rejected_conversations"][-1]["value"].startswith("模型2")


def test_multi_turn_history_is_carried_as_earlier_turns(bench, tmp_path):
    dataset = _all_scored(bench)
    preferences.export(_options(dataset, "human-scores", tasks=["Coherence"]), fmt="trl", out=tmp_path / "t.jsonl")
    [row] = [json.loads(line) for line in open(tmp_path / "t.jsonl", encoding="utf-8")]
    prompt = row["prompt"]
    assert [m["role"] for m in prompt] == ["user", "assistant", "user"]
    assert prompt[0]["content"] == [{"type": "image"}, {"type": "text", "text": "图里有什么？"}]
    assert prompt[1]["content"][0]["text"] == "一只猫。"
    assert prompt[2]["content"] == [{"type": "text", "text": "那它是什么颜色？"}]
    preferences.export(_options(dataset, "human-scores", tasks=["Coherence"]), fmt="povid", out=tmp_path / "p.jsonl")
    [row] = [json.loads(line) for line in open(tmp_path / "p.jsonl", encoding="utf-8")]
    assert [t["from"] for t in row["conversations"]] == ["human", "gpt", "human", "gpt"]
    assert row["conversations"][0]["value"] == "<image>\n图里有什么？"


def test_split_never_puts_a_seed_group_on_both_sides(db, tmp_path):
    dataset = make_dataset(name="split")
    image = make_image(seed=5)
    runs = [make_run(endpoint=make_endpoint(name=f"s{m}"), dataset=dataset) for m in range(2)]
    for g in range(30):
        for v in range(3):
            q = make_question(dataset=dataset, image=image, group=f"0100{g:04d}", variant=v, text=f"问{g}-{v}")
            _score(make_response(run=runs[0], question=q, text=f"好{g}{v}"), [9])
            _score(make_response(run=runs[1], question=q, text=f"差{g}{v}"), [1])
    written = preferences.export(_options(dataset, "human-scores"), fmt="rlaif-v", out=tmp_path / "s.jsonl",
                                 split=0.3, seed=7)
    sides = {}
    for side in ("train", "validation"):
        for line in open(tmp_path / f"s-{side}.jsonl", encoding="utf-8"):
            row = json.loads(line)
            assert row["origin_split"] == side
            sides.setdefault(row["question_id"].rsplit("-", 1)[0], set()).add(side)
    assert all(len(s) == 1 for s in sides.values())
    assert 0 < written.rows["validation"] < written.rows["train"]
    again = preferences.export(_options(dataset, "human-scores"), fmt="rlaif-v", out=tmp_path / "again.jsonl",
                               split=0.3, seed=7)
    assert again.rows == written.rows


def test_a_failed_export_leaves_no_file(bench, tmp_path):
    dataset = _all_scored(bench)
    with pytest.raises(preferences.PreferenceError):
        preferences.export(_options(dataset, "human-scores", "critic-run:404"), fmt="trl", out=tmp_path / "x.jsonl",
                           images=tmp_path / "x.zip")
    assert list(tmp_path.iterdir()) == []


def test_command_prints_counts_per_source_and_task(bench, tmp_path):
    dataset = _all_scored(bench)
    out = io.StringIO()
    call_command("export_preferences", "--dataset", "prefs", "--source", "human-scores", "--format", "povid",
                 "--out", str(tmp_path / "c.jsonl"), "--images-dir", str(tmp_path / "imgs"), stdout=out)
    lines = out.getvalue().splitlines()
    assert "human-scores Description: 3" in lines and "human-scores Coherence: 1" in lines
    assert "train=4 validation=0 images=2" in lines
    assert len(list((tmp_path / "imgs" / "images").iterdir())) == 2
    with pytest.raises(CommandError, match="No dataset"):
        call_command("export_preferences", "--dataset", "nope", "--source", "human-scores", "--out", "x")
    with pytest.raises(CommandError, match="unknown source"):
        call_command("export_preferences", "--dataset", dataset.name, "--source", "scores", "--out", "x")


def test_counts_equal_the_exported_rows(bench, tmp_path):
    dataset = _all_scored(bench)
    options = _options(dataset, "human-scores")
    table = preferences.counts(options)
    written = preferences.export(options, fmt="trl", out=tmp_path / "n.jsonl")
    assert table["total"] == sum(written.rows.values()) == 4
    assert dict(zip(table["tasks"], table["rows"][0]["by_task"], strict=True)) == {"Coherence": 1, "Description": 3}


def test_trl_dpo_trainer_consumes_the_export(bench, tmp_path, tiny_llava, monkeypatch):
    """Two DPO steps with a LoRA adapter on the tiny LLaVA, straight from the exported file and zip."""
    from datasets import Image as ImageFeature
    from datasets import Sequence, load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import DPOConfig, DPOTrainer

    dataset = _all_scored(bench)
    preferences.export(_options(dataset, "human-scores"), fmt="trl", out=tmp_path / "dpo.jsonl",
                       images=tmp_path / "images.zip")
    zipfile.ZipFile(tmp_path / "images.zip").extractall(tmp_path)
    monkeypatch.chdir(tmp_path)  # image paths are relative to the file, as they are for any team using it
    train = load_dataset("json", data_files="dpo.jsonl", split="train")
    train = train.cast_column("images", Sequence(ImageFeature()))
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava)
    processor = AutoProcessor.from_pretrained(tiny_llava)
    config = DPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=2,
                       learning_rate=1e-3, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no",
                       max_length=None, bf16=False)
    trainer = DPOTrainer(model=model, args=config, train_dataset=train, processing_class=processor,
                         peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    result = trainer.train()
    assert result.global_step == 2
    assert any("loss" in entry for entry in trainer.state.log_history)
    assert Path(tmp_path / "dpo.jsonl").exists()
