"""The training job on the tiny critic: progress, cancel, resume from the checkpoint, the new endpoint."""

from __future__ import annotations

import threading

import pytest

from annotation.models import HumanScore
from evaluation import critics, training
from evaluation.backends import Message, clear_cache, get_backend
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
from tests.workers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
TEMPLATE = "问题：{{question}}\n回答：{{answer}}\n请评分。"


@pytest.fixture
def marker_run(tiny_causal_lm, settings, tmp_path):
    """Answers with the marker word 正确 scored 9 by people, the others 2."""
    settings.VAR_DIR = tmp_path
    dataset = make_dataset(name="marker")
    image = make_image(seed=4)
    run = make_run(endpoint=make_endpoint(name="answerer"), dataset=dataset, status="done")
    person = make_user(username="p0", role="annotator")
    for g in range(16):
        good = g % 2 == 0
        question = make_question(dataset=dataset, image=image, group=f"0000{g:04d}", text="图中有什么？")
        response = make_response(run=run, question=question, text=("正确 " if good else "") + f"猫 狗 {g}")
        HumanScore.objects.create(response=response, annotator=person, score=9 if good else 2,
                                  rationale="好" if good else "差")
    base = make_endpoint(name="tiny-critic", role="critic", backend="transformers", base_url="", model_name="",
                         model_path=str(tiny_causal_lm), max_new_tokens=16, device="cpu")
    template = critics.critic_template_default().revise(body=TEMPLATE, by=None)
    return training.training_run_create(base=base, datasets=[dataset], template=template, seed=0, lora={
        "rank": 8, "alpha": 16, "learning_rate": 5e-3, "epochs": 12, "max_length": 256, "batch_size": 4,
        "gradient_accumulation": 1, "save_every": 4, "keep_checkpoints": 2})


def test_it_trains_records_progress_and_registers_a_critic_that_loads_base_and_adapter(marker_run):
    training.training_run_work(marker_run.pk)
    run = TrainingRun.objects.get(pk=marker_run.pk)
    assert run.status == "done", run.error
    assert run.done == run.total == 12 * 4  # 13 training examples (3 of 16 groups held out), batches of 4
    steps = [step for step, _ in run.loss_history]
    assert steps == list(range(1, run.total + 1))
    assert run.loss_history[-1][1] < run.loss_history[0][1], "the loss goes down"
    checkpoints = sorted(p.name for p in training.output_dir_of(run).glob("checkpoint-*"))
    assert len(checkpoints) == 2, f"only the last K checkpoints are kept: {checkpoints}"
    critic = run.critic_endpoint
    assert critic.base_endpoint == run.base and critic.model_path == run.base.model_path
    assert critic.trained_by == run and critic.adapter_path.endswith("adapter")
    clear_cache()
    tuned = get_backend(critic.to_backend_config(), cache_key=critic.cache_key)
    base = get_backend(run.base.to_backend_config(), cache_key=run.base.cache_key)
    assert type(tuned.model).__name__.startswith("Peft")
    conversation = [[Message("user", "问题：图中有什么？\n回答：正确 猫\n请评分。")]]
    assert tuned.generate(conversation)[0].text != base.generate(conversation)[0].text
    clear_cache()


def test_a_cancelled_run_stops_and_a_resume_continues_from_its_checkpoint(marker_run):
    worker = threading.Thread(target=training.training_run_work, args=(marker_run.pk,))
    worker.start()
    wait_for(lambda: TrainingRun.objects.get(pk=marker_run.pk).done >= 6, timeout=300, what="six steps")
    assert TrainingRun.objects.get(pk=marker_run.pk).cancel()
    worker.join(timeout=120)
    run = TrainingRun.objects.get(pk=marker_run.pk)
    assert run.status == "cancelled" and run.done < run.total and run.critic_endpoint is None
    checkpoint = int(training._latest_checkpoint(training.output_dir_of(run)).rsplit("-", 1)[-1])
    assert checkpoint >= 4
    stopped_at = run.done
    assert run.requeue()
    training.training_run_work(run.pk)
    run.refresh_from_db()
    assert run.status == "done" and run.done == run.total
    steps = [step for step, _ in run.loss_history]
    resumed = steps[steps.index(stopped_at) + 1:]
    assert resumed[0] == checkpoint + 1, "training resumes after the last checkpoint, not from step 1"
