"""Critic training data: examples in the critic template's format, a held-out split by seed group."""

from __future__ import annotations

import json

import pytest

from annotation.models import Adjudication, HumanScore
from evaluation import critics, training
from evaluation.analysis import training_set_lines
from evaluation.models import TrainingRun
from tests.factories import (
    make_dataset,
    make_endpoint,
    make_image,
    make_question,
    make_response,
    make_run,
    make_user,
)


@pytest.fixture
def scored(db, tiny_causal_lm):
    """12 seeds with two accepted rewrites each, one model's answers, every answer scored by two people."""
    dataset = make_dataset(name="train-ds")
    image = make_image(seed=3)
    run = make_run(endpoint=make_endpoint(name="answerer"), dataset=dataset, status="done")
    people = [make_user(username=f"p{i}", role="annotator") for i in range(2)]
    for g in range(12):
        for variant in range(3):
            question = make_question(dataset=dataset, image=image, group=f"0000{g:04d}", variant=variant,
                                     text=f"问题 {g}-{variant}", reference=f"参考 {g}")
            response = make_response(run=run, question=question, text=f"回答 {g}-{variant}")
            for i, person in enumerate(people):
                HumanScore.objects.create(response=response, annotator=person, score=(g % 9) + 1 + i,
                                          rationale=f"理由{i}" if i else "")
    base = make_endpoint(name="base-critic", role="critic", backend="transformers", base_url="",
                         model_name="", model_path=str(tiny_causal_lm))
    return {"dataset": dataset, "run": run, "base": base, "template": critics.critic_template_default()}


def test_it_keeps_every_seed_group_on_one_side(scored):
    run = training.training_run_create(base=scored["base"], datasets=[scored["dataset"]],
                                       template=scored["template"], held_out=0.25, seed=7)
    by_id = {r.pk: (r.question.dataset_id, r.question.group)
             for r in scored["run"].responses.select_related("question")}
    train_groups = {by_id[pk] for pk in run.train_response_ids}
    held_groups = {by_id[pk] for pk in run.held_out_response_ids}
    assert train_groups and held_groups and not train_groups & held_groups
    assert len(held_groups) == 3 and len(run.held_out_response_ids) == 9
    assert sorted(map(tuple, run.held_out_groups)) == sorted(held_groups)
    assert len(run.train_response_ids) + len(run.held_out_response_ids) == 36
    again = training.training_run_create(base=scored["base"], datasets=[scored["dataset"]],
                                         template=scored["template"], held_out=0.25, seed=7)
    other = training.training_run_create(base=scored["base"], datasets=[scored["dataset"]],
                                         template=scored["template"], held_out=0.25, seed=8)
    assert again.held_out_groups == run.held_out_groups, "the same seed gives the same split"
    assert other.held_out_groups != run.held_out_groups
    assert run.lora == training.LORA_DEFAULTS


def test_the_target_is_the_rounded_mean_with_a_reason_and_the_prompt_is_the_exports(scored):
    first = scored["run"].responses.select_related("question").order_by("id").first()  # scores 1 and 2
    Adjudication.objects.create(response=first, note="两人都对", resolved_by=make_user(username="judge"))
    examples = training.training_examples(template=scored["template"],
                                          responses=training.scored_responses(datasets=[scored["dataset"]]))
    by_id = {e.response_id: e for e in examples}
    assert by_id[first.pk].target == {"Rating": 2, "Reason": "两人都对"}  # 1.5 rounds half up
    second = scored["run"].responses.order_by("id")[1]
    assert by_id[second.pk].target == {"Rating": 2, "Reason": "理由1"}
    exported = {json.loads(line)["meta"]["response_id"]: json.loads(line)["messages"][0]["content"]
                for line in training_set_lines(template=scored["template"], dataset=scored["dataset"])}
    assert all(e.prompt == exported[e.response_id] for e in examples)
    chat = by_id[first.pk].as_chat()
    assert json.loads(chat["completion"][0]["content"]) == {"Rating": 2, "Reason": "两人都对"}


def test_the_dry_run_counts_tokens_with_the_base_tokenizer(scored):
    examples = training.training_examples(template=scored["template"],
                                          responses=training.scored_responses(datasets=[scored["dataset"]]))
    counts = training.token_counts(base=scored["base"], examples=examples[:4], max_length=50)
    assert counts["examples"] == 4 and counts["tokens"] > 4 * 50
    assert counts["over_max_length"] == 4 and counts["longest"] >= counts["mean"] > 0


def test_it_refuses_what_cannot_train(scored):
    args = dict(datasets=[scored["dataset"]], template=scored["template"])
    with pytest.raises(ValueError, match="not a critic with local weights"):
        training.training_run_create(base=make_endpoint(name="api-judge", role="critic"), **args)
    with pytest.raises(ValueError, match="rank"):
        training.training_run_create(base=scored["base"], lora={"rank": 0}, **args)
    with pytest.raises(ValueError, match="Unknown LoRA setting"):
        training.training_run_create(base=scored["base"], lora={"ranks": 8}, **args)
    with pytest.raises(ValueError, match="held-out fraction"):
        training.training_run_create(base=scored["base"], held_out=1.0, **args)
    with pytest.raises(ValueError, match="two seed questions"):
        training.training_run_create(base=scored["base"], datasets=[make_dataset(name="empty")],
                                     template=scored["template"])
    assert not TrainingRun.objects.exists()
