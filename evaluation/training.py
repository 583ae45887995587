"""Critic training: the examples, the held-out split and the LoRA settings of a TrainingRun.

The examples are the human-scored responses of the chosen datasets (or runs): the prompt is the critic
template's own rendering (``analysis.training_prompt``, the training-set export's code), the target is the
reply the template asks for, ``{"Rating": mean human score rounded, "Reason": adjudication note or a
rationale}``. The split keeps every rewrite of a seed on one side, so the held-out set never holds a
paraphrase of a question the critic was trained on.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

from django.db import transaction
from django.db.models import QuerySet

from annotation.models import Dataset, HumanScore

from .analysis import training_prompt
from .models import InferenceRun, ModelEndpoint, PromptTemplate, Response, TrainingRun

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
    return run


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
