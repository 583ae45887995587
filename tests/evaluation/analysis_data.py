"""Small analysis datasets shared by the analysis tests: random critic-human data and a hand-worked one."""

from __future__ import annotations

import random

from annotation.models import HumanScore
from evaluation.models import CriticRun
from tests.factories import (
    make_critic_score,
    make_dataset,
    make_endpoint,
    make_image,
    make_question,
    make_response,
    make_run,
    make_user,
)

TASKS = ["Description", "Counting", "OCR", "Reasoning", "Coherence"]


def random_world(*, seed: int = 1, questions: int = 30) -> dict:
    """2 models x `questions` answers, 2 critic runs (some unparsed), 3 annotators scoring overlapping subsets."""
    rng = random.Random(seed)
    dataset = make_dataset(name="随机 random")
    image = make_image(seed=seed)
    qs = []
    for i in range(questions):
        task = TASKS[i % len(TASKS)]
        history = [{"user": "上一轮问题", "assistant": "上一轮回答"}] if task == "Coherence" else []
        qs.append(make_question(dataset=dataset, image=image, task=task, group=f"{i // 3:08d}", variant=i % 3,
                                history=history, text=f"问题{i}"))
    runs = [make_run(endpoint=make_endpoint(name=name), dataset=dataset, status="done")
            for name in ("模型甲 Qwen-VL", "模型乙 GLM-4V")]
    annotators = [make_user(username=name, role="annotator") for name in ("ann1", "ann2", "ann3")]
    critics = []
    for name in ("评委 judge-a", "评委 judge-b"):
        critic_run = CriticRun.objects.create(critic=make_endpoint(name=name, role="critic"), status="done")
        critic_run.inference_runs.set(runs)
        critics.append(critic_run)
    responses = []
    for run in runs:
        for q in qs:
            response = make_response(run=run, question=q, text=f"回答 {q.pk}")
            responses.append(response)
            base = rng.randint(1, 10)
            for critic_run in critics:
                if rng.random() < 0.1:
                    make_critic_score(critic_run=critic_run, response=response, score=None, status="unparsed")
                else:
                    make_critic_score(critic_run=critic_run, response=response,
                                      score=min(10, max(1, base + rng.randint(-2, 2))),
                                      expected_score=round(rng.uniform(1, 10), 2))
            for annotator in annotators:
                if rng.random() < 0.7:
                    HumanScore.objects.create(response=response, annotator=annotator,
                                              score=min(10, max(1, base + rng.randint(-1, 1))),
                                              rationale=f"理由 <{annotator.username}>")
    return {"dataset": dataset, "runs": runs, "critics": critics, "annotators": annotators, "responses": responses}


def hand_world() -> dict:
    """One model, one critic run, numbers worked out by hand in the tests.

    Description group 00000000: variants 0,1,2 scored 6, 8, 7 (std sqrt(2/3), variance 2/3);
    Description group 00000001: variants 0,1 scored 5, 5 (spread 0); Counting 00030000: 10 (a single variant,
    no spread); Recognition 00020000: unparsed.
    """
    dataset = make_dataset(name="手算 hand")
    image = make_image(seed=99)
    run = make_run(endpoint=make_endpoint(name="模型 M"), dataset=dataset, status="done")
    critic_run = CriticRun.objects.create(critic=make_endpoint(name="judge", role="critic"), status="done")
    critic_run.inference_runs.set([run])
    people = [make_user(username="p1", role="annotator"), make_user(username="p2", role="annotator")]
    items = [("Description", "00000000", 0, 6, (6, 6)), ("Description", "00000000", 1, 8, (7, 9)),
             ("Description", "00000000", 2, 7, (7, 7)), ("Description", "00000001", 0, 5, (4, 6)),
             ("Description", "00000001", 1, 5, (5, 5)), ("Counting", "00030000", 0, 10, (8, 8)),
             ("Recognition", "00020000", 0, None, (3, 4))]
    for task, group, variant, critic, humans in items:
        q = make_question(dataset=dataset, image=image, task=task, group=group, variant=variant, text=f"{group}-{variant}")
        response = make_response(run=run, question=q)
        make_critic_score(critic_run=critic_run, response=response, score=critic,
                          status="parsed" if critic else "unparsed",
                          expected_score=None if critic is None else critic - 0.5)
        for person, value in zip(people, humans, strict=True):
            HumanScore.objects.create(response=response, annotator=person, score=value, rationale="好")
    return {"dataset": dataset, "run": run, "critic_run": critic_run, "people": people}
