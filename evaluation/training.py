"""Critic training: the examples, the held-out split and the LoRA settings of a TrainingRun.

The examples are the human-scored responses of the chosen datasets (or runs): the prompt is the critic
template's own rendering (``analysis.training_prompt``, the training-set export's code), the target is the
reply the template asks for, ``{"Rating": mean human score rounded, "Reason": adjudication note or a
rationale}``. The split keeps every rewrite of a seed on one side, so the held-out set never holds a
paraphrase of a question the critic was trained on.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation.models import Dataset, HumanScore

from .analysis import training_prompt
from .models import InferenceRun, ModelEndpoint, PromptTemplate, Response, TrainingRun

log = logging.getLogger(__name__)

LORA_DEFAULTS: dict = {
    "rank": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear", "learning_rate": 2e-4,
    "epochs": 3, "max_length": 2048, "batch_size": 4, "gradient_accumulation": 4, "keep_checkpoints": 2,
    "save_every": 50,
}
_POSITIVE_INTS = ("rank", "alpha", "epochs", "max_length", "batch_size", "gradient_accumulation",
                  "keep_checkpoints", "save_every")


def lora_settings(overrides: dict | None = None) -> dict:
    """The defaults with ``overrides`` applied; a ValueError names an unknown or out-of-range setting."""
    settings = dict(LORA_DEFAULTS)
    for name, value in (overrides or {}).items():
        if name not in LORA_DEFAULTS:
            raise ValueError(f"Unknown LoRA setting {name!r}; the settings are {', '.join(LORA_DEFAULTS)}.")
        settings[name] = value
    for name in _POSITIVE_INTS:
        if not isinstance(settings[name], int) or isinstance(settings[name], bool) or settings[name] < 1:
            raise ValueError(f"{name} must be a whole number of at least 1.")
    if not isinstance(settings["learning_rate"], int | float) or not 0 < settings["learning_rate"] < 1:
        raise ValueError("learning_rate must be between 0 and 1.")
    if not isinstance(settings["dropout"], int | float) or not 0 <= settings["dropout"] < 1:
        raise ValueError("dropout must be at least 0 and below 1.")
    if not isinstance(settings["target_modules"], str | list) or not settings["target_modules"]:
        raise ValueError('target_modules must be "all-linear" or a list of module names.')
    return settings


def scored_responses(*, datasets: list[Dataset], inference_runs: list[InferenceRun] | None = None) -> QuerySet:
    """Answers with at least one human score, of the chosen runs (or of every run over the datasets)."""
    responses = Response.objects.filter(error="", human_count__gt=0)
    if inference_runs:
        responses = responses.filter(run__in=inference_runs)
    else:
        responses = responses.filter(question__dataset__in=datasets)
    return responses.select_related("question").order_by("id")


def _round_half_up(value: float) -> int:
    return min(10, max(1, math.floor(value + 0.5)))


def target_of(response: Response, scores: list[HumanScore], note: str) -> dict:
    """What the critic should have written: the mean human score rounded half up, and the adjudication note
    or else the rationale of the annotator closest to that rating."""
    rating = _round_half_up(sum(s.score for s in scores) / len(scores))
    reasons = sorted((abs(s.score - rating), s.annotator_id, s.rationale) for s in scores if s.rationale.strip())
    return {"Rating": rating, "Reason": note or (reasons[0][2] if reasons else "")}


@dataclass
class Example:
    response_id: int
    group: tuple[int, str]  # (dataset id, rewrite group): the seed and its rewrites
    task: str
    prompt: str
    target: dict

    def as_chat(self) -> dict:
        """TRL's conversational prompt-completion format: the loss falls on the completion only."""
        return {"prompt": [{"role": "user", "content": self.prompt}],
                "completion": [{"role": "assistant", "content": json.dumps(self.target, ensure_ascii=False)}]}


def training_examples(*, template: PromptTemplate, responses: QuerySet) -> list[Example]:
    from annotation.models import Adjudication

    responses = list(responses)
    ids = [r.pk for r in responses]
    scores: dict[int, list[HumanScore]] = {}
    for score in HumanScore.objects.filter(response_id__in=ids).order_by("response_id", "annotator_id"):
        scores.setdefault(score.response_id, []).append(score)
    notes = dict(Adjudication.objects.filter(response_id__in=ids).values_list("response_id", "note"))
    seeds: dict[tuple[int, str], tuple[str, list]] = {}
    return [Example(r.pk, (r.question.dataset_id, r.question.group), r.question.task,
                    training_prompt(template=template, response=r, seeds=seeds),
                    target_of(r, scores[r.pk], notes.get(r.pk, "").strip()))
            for r in responses if r.pk in scores]


def split_by_group(groups: list[tuple[int, str]], *, fraction: float, seed: int) -> set[tuple[int, str]]:
    """The held-out seed groups: ``fraction`` of the distinct groups (at least one, and never all when there
    are two or more), drawn with ``seed``. The same groups and seed always give the same split."""
    distinct = sorted(set(groups))
    if len(distinct) < 2:
        raise ValueError("Held-out data needs human-scored answers to at least two seed questions.")
    count = min(max(1, round(fraction * len(distinct))), len(distinct) - 1)
    return set(random.Random(seed).sample(distinct, count))


@transaction.atomic
def training_run_create(*, base: ModelEndpoint, datasets: list[Dataset], template: PromptTemplate,
                        inference_runs: list[InferenceRun] | None = None, held_out: float = 0.2, seed: int = 0,
                        lora: dict | None = None, by=None) -> TrainingRun:
    """A training run with its split fixed and stored; a ValueError, and no run, for what can't train."""
    if base.role != ModelEndpoint.Role.CRITIC or base.backend != ModelEndpoint.Backend.TRANSFORMERS:
        raise ValueError(f"{base.name} is not a critic with local weights (a transformers critic endpoint).")
    if template.kind != PromptTemplate.Kind.CRITIC:
        raise ValueError(f"Template {template} is not a critic template.")
    if not 0 < held_out < 1:
        raise ValueError("The held-out fraction must be between 0 and 1.")
    if not datasets and not inference_runs:
        raise ValueError("Choose at least one dataset or run.")
    settings = lora_settings(lora)
    examples = training_examples(template=template,
                                 responses=scored_responses(datasets=datasets, inference_runs=inference_runs))
    held = split_by_group([e.group for e in examples], fraction=held_out, seed=seed)
    run = TrainingRun.objects.create(
        base=base, template=template, held_out_fraction=held_out, seed=seed, lora=settings, created_by=by,
        params={**base.generation_params(), "template": str(template)},
        train_response_ids=[e.response_id for e in examples if e.group not in held],
        held_out_response_ids=[e.response_id for e in examples if e.group in held],
        held_out_groups=sorted([list(g) for g in held]),
    )
    run.datasets.set(datasets)
    run.inference_runs.set(inference_runs or [])
    training_run_enqueue(run)
    return run


def training_run_enqueue(run: TrainingRun) -> None:
    from .tasks import train_critic

    transaction.on_commit(lambda: train_critic.apply_async((run.pk,), queue="gpu"))


def token_counts(*, base: ModelEndpoint, examples: list[Example], max_length: int) -> dict:
    """The dry run: tokens per example through the base critic's own tokenizer and chat template, and how
    many examples ``max_length`` would cut."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.model_path, local_files_only=True,
                                              trust_remote_code=base.trust_remote_code)
    lengths = []
    for example in examples:
        chat = example.as_chat()
        lengths.append(len(tokenizer.apply_chat_template(chat["prompt"] + chat["completion"], tokenize=True,
                                                         return_dict=True)["input_ids"]))
    return {"examples": len(lengths), "tokens": sum(lengths), "longest": max(lengths, default=0),
            "mean": sum(lengths) / len(lengths) if lengths else 0.0,
            "over_max_length": sum(1 for n in lengths if n > max_length)}


# --- the job ----------------------------------------------------------------------------------------------


def output_dir_of(run: TrainingRun) -> Path:
    """Checkpoints and the adapter, under the model store."""
    return Path(django_settings.VAR_DIR) / "models" / "trained" / f"training-run-{run.pk}"


def _latest_checkpoint(directory: Path) -> str | None:
    checkpoints = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def _progress_callback(run: TrainingRun):
    """A TrainerCallback that writes step, loss and speed to the row and stops when the run is cancelled."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def __init__(self) -> None:
            self.since: tuple[float, float] | None = None  # (time, tokens) at the first log of this claim

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:
                return
            now, tokens = time.monotonic(), float(logs.get("num_tokens", 0.0))
            self.since = self.since or (now, tokens)
            speed = (tokens - self.since[1]) / (now - self.since[0]) if now > self.since[0] else None
            history = [*TrainingRun.objects.values_list("loss_history", flat=True).get(pk=run.pk),
                       [state.global_step, round(float(logs["loss"]), 5)]]
            TrainingRun.objects.filter(pk=run.pk).update(
                done=state.global_step, total=state.max_steps, loss_history=history, tokens_per_second=speed,
                updated_at=timezone.now())

        def on_step_end(self, args, state, control, **kwargs):
            from .signals import shutting_down

            if not run.holds_claim() or shutting_down.is_set():
                control.should_training_stop = True
            return control

    return Progress()


def _train(run: TrainingRun) -> Path:
    """The training itself: TRL's SFTTrainer with a LoRA config; returns the saved adapter's directory."""
    import torch
    from datasets import Dataset as HFDataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer  # ~13 s to import: only here, on the GPU worker

    lora, base = run.lora, run.base
    examples = training_examples(template=run.template,
                                 responses=Response.objects.filter(pk__in=run.train_response_ids)
                                 .select_related("question").order_by("id"))
    data = HFDataset.from_list([e.as_chat() for e in examples])
    out = output_dir_of(run)
    out.mkdir(parents=True, exist_ok=True)
    config = SFTConfig(
        output_dir=str(out), num_train_epochs=lora["epochs"], per_device_train_batch_size=lora["batch_size"],
        gradient_accumulation_steps=lora["gradient_accumulation"], learning_rate=lora["learning_rate"],
        max_length=lora["max_length"], save_strategy="steps", save_steps=lora["save_every"],
        save_total_limit=lora["keep_checkpoints"], logging_steps=1, report_to=[], seed=run.seed,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
    )
    peft_config = LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                             target_modules=lora["target_modules"], task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=base.model_path, args=config, train_dataset=data, peft_config=peft_config,
                         callbacks=[_progress_callback(run)])
    trainer.train(resume_from_checkpoint=_latest_checkpoint(out))
    if trainer.state.global_step < trainer.state.max_steps:
        raise _Stopped
    adapter = out / "adapter"
    trainer.model.save_pretrained(str(adapter))
    return adapter


class _Stopped(Exception):
    """Cancelled, taken over or shutting down: the last checkpoint stays for a resume."""


@transaction.atomic
def critic_endpoint_register(*, run: TrainingRun, adapter: Path) -> ModelEndpoint:
    """The fine-tuned critic as an endpoint: the base's weights and settings, plus the adapter."""
    base = run.base
    endpoint = ModelEndpoint.objects.create(
        name=f"{base.name}-ft{run.pk}", role=ModelEndpoint.Role.CRITIC, backend=base.backend,
        model_path=base.model_path, adapter_path=str(adapter), base_endpoint=base,
        max_new_tokens=base.max_new_tokens, temperature=base.temperature, top_p=base.top_p,
        batch_size=base.batch_size, device=base.device, dtype=base.dtype,
        trust_remote_code=base.trust_remote_code, send_image=base.send_image, created_by=run.created_by,
    )
    TrainingRun.objects.filter(pk=run.pk).update(critic_endpoint=endpoint, output_dir=str(adapter.parent))
    return endpoint


def training_run_work(run_id: int) -> None:
    """The gpu-queue job: claim, train (resuming from the last checkpoint), register the critic."""
    from .signals import WORKER_NAME

    run = TrainingRun.objects.select_related("base", "template").filter(pk=run_id).first()
    if run is None or not run.claim(WORKER_NAME):
        return
    if changes := run.endpoint_changes():
        run.finish(error=f"The base critic changed since this run was made ({'; '.join(changes)}).")
        return
    try:
        adapter = _train(run)
    except _Stopped:
        log.info("%s stopped before its last step; the last checkpoint stays", run)
        return
    except Exception as exc:
        log.exception("%s failed", run)
        run.finish(error=f"{type(exc).__name__}: {exc}"[:4000])
        return
    critic_endpoint_register(run=run, adapter=adapter)
    run.finish()
