"""Preference pairs for alignment tuning: a chosen and a rejected answer to one image and prompt.

Pairs come from the judgements the app already holds, each pair keeping where it came from:

- ``human-scores``: two responses to the same question whose mean human scores differ by at least
  ``min_margin`` points;
- ``critic-run:ID``: the same rule on one critic run's scores, optionally only where the humans who
  scored both responses order them the same way;
- ``human-votes`` and ``pair-run:ID``: pairwise votes and pair-judge verdicts, where those exist
  (see ``VOTE_SOURCES``).

A pair is always two responses to one question. The export streams: responses are read question by
question, texts and images a chunk at a time, so 100,000 pairs cost a few MiB, not a copy of the data.

Formats (``FORMATS``): TRL's conversational vision preference format, RLAIF-V's columns, LLaVA-RLHF's
comparison records and POVID's LLaVA-style records. Each row also carries ``source``, ``margin``,
``annotator_count`` and ``question_id``; images go once into a zip (or folder) beside the file and
are referenced by relative path.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import combinations, groupby
from pathlib import Path

from annotation.models import Dataset, HumanScore, Question

from .exchange import jsonl_line
from .models import CriticRun, CriticScore, Response

FORMATS = ("trl", "rlaif-v", "llava-rlhf", "povid")
POINTWISE_SOURCES = ("human-scores", "critic-run")
VOTE_SOURCES = ("human-votes", "pair-run")
IMAGE_DIR = "images"
CHUNK = 500


class PreferenceError(ValueError):
    """A source or option that can't be used, with a message for the user."""


@dataclass(frozen=True)
class Source:
    kind: str  # human-scores | critic-run | human-votes | pair-run
    run_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> Source:
        kind, _, rest = text.strip().partition(":")
        if kind in ("human-scores", "human-votes") and not rest:
            return cls(kind)
        if kind in ("critic-run", "pair-run") and rest.isascii() and rest.isdigit() and len(rest) < 12:
            return cls(kind, int(rest))
        raise PreferenceError(
            f"unknown source {text!r}: use human-scores, human-votes, critic-run:ID or pair-run:ID")

    def __str__(self) -> str:
        return self.kind if self.run_id is None else f"{self.kind}:{self.run_id}"


@dataclass
class Options:
    dataset: Dataset
    sources: list[Source]
    min_margin: float = 2.0
    min_agreement: float = 0.0  # 0..1: share of annotator pairs (or voters) on the chosen side
    tasks: list[str] = field(default_factory=list)
    run_ids: list[int] = field(default_factory=list)
    per_question: int = 0  # at most K pairs per question and source (0: no cap)
    dedupe: bool = True
    critic_agrees: bool = False  # critic-run: keep a pair only where humans who scored both agree
    exclude_ties: bool = True  # votes: ties and both-bad never make a pair; kept for the page's wording


@dataclass(frozen=True)
class Pair:
    question_id: int
    chosen_id: int
    rejected_id: int
    source: str
    margin: float
    annotator_count: int
    agreement: float | None  # None where it was not asked for


# --- building pairs ---------------------------------------------------------------------------------------


def _responses(options: Options) -> Iterator[dict]:
    qs = (Response.objects.filter(question__dataset=options.dataset, error="", question__status="accepted")
          .exclude(text=""))
    if options.tasks:
        qs = qs.filter(question__task__in=options.tasks)
    if options.run_ids:
        qs = qs.filter(run_id__in=options.run_ids)
    return qs


def _human_scores_by_response(response_ids: Iterable[int]) -> dict[int, list[int]]:
    by_response: dict[int, list[int]] = defaultdict(list)
    for response_id, score in HumanScore.objects.filter(response_id__in=list(response_ids)).values_list(
            "response_id", "score"):
        by_response[response_id].append(score)
    return by_response


def concordance(higher: list[int], lower: list[int]) -> float:
    """Share of (a, b) score pairs, a from the chosen response's annotators and b from the rejected
    one's, where a > b (ties count half): 1.0 when every annotator puts the chosen answer above."""
    if not higher or not lower:
        return 1.0
    wins = sum((a > b) + 0.5 * (a == b) for a in higher for b in lower)
    return wins / (len(higher) * len(lower))


def _pointwise_rows(source: Source, options: Options) -> Iterator[tuple[int, int, float, int, str]]:
    """(question_id, response_id, value, annotator_count, text) ordered by question."""
    if source.kind == "human-scores":
        rows = (_responses(options).filter(human_count__gt=0)
                .values_list("question_id", "id", "human_sum", "human_count", "text")
                .order_by("question_id", "id"))
        for question_id, response_id, total, count, text in rows.iterator(chunk_size=2000):
            yield question_id, response_id, total / count, count, text
        return
    if not CriticRun.objects.filter(pk=source.run_id).exists():
        raise PreferenceError(f"there is no critic run {source.run_id}")
    rows = (CriticScore.objects.filter(critic_run_id=source.run_id, score__isnull=False,
                                       response__in=_responses(options))
            .values_list("response__question_id", "response_id", "score", "response__human_count", "response__text")
            .order_by("response__question_id", "response_id"))
    yield from ((q, r, float(s), c, t) for q, r, s, c, t in rows.iterator(chunk_size=2000))


def _pointwise_pairs(source: Source, options: Options) -> Iterator[Pair]:
    needs_humans = options.min_agreement > 0 or (source.kind == "critic-run" and options.critic_agrees)
    for question_id, group in groupby(_pointwise_rows(source, options), key=lambda row: row[0]):
        rows = list(group)
        if options.dedupe:  # identical answers to one question are one answer
            seen: set[str] = set()
            rows = [row for row in rows if not (row[4].strip() in seen or seen.add(row[4].strip()))]
        if len(rows) < 2:
            continue
        humans = _human_scores_by_response(row[1] for row in rows) if needs_humans else {}
        candidates = []
        for a, b in combinations(rows, 2):
            high, low = (a, b) if a[2] >= b[2] else (b, a)
            margin = high[2] - low[2]
            if margin < options.min_margin or margin == 0:
                continue
            agreement = concordance(humans.get(high[1], []), humans.get(low[1], [])) if needs_humans else None
            if needs_humans and source.kind == "human-scores" and agreement < options.min_agreement:
                continue
            if needs_humans and source.kind == "critic-run" and humans.get(high[1]) and humans.get(low[1]):
                if options.critic_agrees and agreement <= 0.5:
                    continue
                if agreement < options.min_agreement:
                    continue
            candidates.append(Pair(question_id, high[1], low[1], str(source), round(margin, 4),
                                   min(high[3], low[3]), agreement if agreement is None else round(agreement, 4)))
        candidates.sort(key=lambda p: (-p.margin, p.chosen_id, p.rejected_id))
        yield from candidates[: options.per_question or None]


VOTE_PAIR_BUILDERS: dict[str, Callable[[Source, Options], Iterator[Pair]]] = {}


def register_vote_source(kind: str):
    """Pairwise votes and pair-judge verdicts plug in here (they live with the pairwise models)."""
    def decorate(builder: Callable[[Source, Options], Iterator[Pair]]):
        VOTE_PAIR_BUILDERS[kind] = builder
        return builder
    return decorate


def pairs(options: Options) -> Iterator[Pair]:
    """Every pair of every source, in source order, then question order."""
    for source in options.sources:
        if source.kind in POINTWISE_SOURCES:
            yield from _pointwise_pairs(source, options)
        elif source.kind in VOTE_PAIR_BUILDERS:
            yield from VOTE_PAIR_BUILDERS[source.kind](source, options)
        else:
            raise PreferenceError(f"{source.kind}: there are no pairwise votes or pair-judge runs in this app yet")


# --- splits and counts ------------------------------------------------------------------------------------


def in_validation(dataset_id: int, group: str, *, fraction: float, seed: int) -> bool:
    """A seed group's side of the split: every rewrite of a seed lands where its seed does."""
    if fraction <= 0:
        return False
    return random.Random(f"{seed}:{dataset_id}:{group}").random() < fraction


def counts(options: Options) -> dict:
    """Pairs per source and task, for the page's live table (the same pairs the export writes)."""
    tasks = dict(Question.objects.filter(dataset=options.dataset).values_list("id", "task"))
    table: dict[str, Counter] = {str(source): Counter() for source in options.sources}
    for pair in pairs(options):
        table[pair.source][tasks[pair.question_id]] += 1
    task_names = sorted({task for row in table.values() for task in row})
    return {"tasks": task_names, "rows": [{"source": s, "by_task": [row.get(t, 0) for t in task_names],
                                           "total": sum(row.values())} for s, row in table.items()],
            "total": sum(sum(row.values()) for row in table.values())}


# --- rows in each format ----------------------------------------------------------------------------------


@dataclass
class _Context:
    question: Question
    history: list
    image_path: str  # relative to the file


def _image_name(question: Question) -> str:
    return f"{IMAGE_DIR}/{question.image_id}.{question.image.extension}"


def _prompt_text(context: _Context, *, image_tag: bool) -> str:
    return ("<image>\n" if image_tag else "") + context.question.text


def _llava_turns(context: _Context, answer: str) -> list[dict]:
    """LLaVA-style conversation: the image tag on the first human turn, history first."""
    turns = []
    for i, turn in enumerate(context.history):
        turns.append({"from": "human", "value": ("<image>\n" if i == 0 else "") + turn.get("user", "")})
        turns.append({"from": "gpt", "value": turn.get("assistant", "")})
    turns.append({"from": "human", "value": _prompt_text(context, image_tag=not context.history)})
    if answer is not None:
        turns.append({"from": "gpt", "value": answer})
    return turns


def _trl_prompt(context: _Context) -> list[dict]:
    messages = []
    for i, turn in enumerate(context.history):
        content = ([{"type": "image"}] if i == 0 else []) + [{"type": "text", "text": turn.get("user", "")}]
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": turn.get("assistant", "")}]})
    content = ([] if context.history else [{"type": "image"}]) + [{"type": "text", "text": context.question.text}]
    messages.append({"role": "user", "content": content})
    return messages


def _row(fmt: str, pair: Pair, context: _Context, chosen: str, rejected: str, *, index: int, split: str) -> dict:
    question = context.question
    meta = {"source": pair.source, "margin": pair.margin, "annotator_count": pair.annotator_count,
            "question_id": question.question_id}
    if fmt == "trl":
        row = {"prompt": _trl_prompt(context),
               "chosen": [{"role": "assistant", "content": [{"type": "text", "text": chosen}]}],
               "rejected": [{"role": "assistant", "content": [{"type": "text", "text": rejected}]}],
               "images": [context.image_path]}
    elif fmt == "rlaif-v":
        history = "".join(f"{t.get('user', '')}\n{t.get('assistant', '')}\n" for t in context.history)
        row = {"ds_name": question.dataset.name, "image": context.image_path, "question": history + question.text,
               "chosen": chosen, "rejected": rejected, "origin_dataset": question.dataset.name,
               "origin_split": split, "idx": index, "image_path": context.image_path}
    elif fmt == "llava-rlhf":
        flip = random.Random(f"{pair.question_id}:{pair.chosen_id}:{pair.rejected_id}").random() < 0.5
        first, second = (rejected, chosen) if flip else (chosen, rejected)
        row = {"id": f"{question.question_id}-{index}", "image": context.image_path,
               "conversations": _llava_turns(context, None),
               "output_1": {"from": "gpt", "value": first}, "output_2": {"from": "gpt", "value": second},
               "preference": 2 if flip else 1}
    elif fmt == "povid":
        row = {"id": f"{question.question_id}-{index}", "image": context.image_path,
               "conversations": _llava_turns(context, chosen),
               "rejected_conversations": _llava_turns(context, rejected)}
    else:
        raise PreferenceError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    return row | meta


def _chunks(items: Iterator[Pair], size: int) -> Iterator[list[Pair]]:
    chunk: list[Pair] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class Written:
    rows: dict[str, int] = field(default_factory=lambda: {"train": 0, "validation": 0})
    by_source_task: Counter = field(default_factory=Counter)
    images: int = 0
    files: list[Path] = field(default_factory=list)


class _ImageSink:
    """Each image once, into a zip or a folder, under images/<id>.<ext>."""

    def __init__(self, target: Path | None, *, as_zip: bool):
        self.target, self.as_zip, self.written = target, as_zip, set()
        self.zip = zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) if target and as_zip else None

    def add(self, question: Question) -> None:
        if self.target is None or question.image_id in self.written:
            return
        self.written.add(question.image_id)
        name = _image_name(question)
        with question.image.file.open("rb") as source:
            if self.zip is not None:
                with self.zip.open(name, "w") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            else:
                (self.target / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
                with open(self.target / name, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def split_paths(out: Path, fraction: float) -> dict[str, Path]:
    if fraction <= 0:
        return {"train": out}
    return {"train": out.with_name(f"{out.stem}-train{out.suffix}"),
            "validation": out.with_name(f"{out.stem}-validation{out.suffix}")}


def export(options: Options, *, fmt: str, out: Path, images: Path | None = None, images_as_zip: bool = True,
           split: float = 0.0, seed: int = 0, progress: Callable[[int], None] | None = None) -> Written:
    """Write the pairs as JSONL (one file, or train and validation files) and their images.

    Whole files or none: everything goes to temporary files in the target folders, renamed at the end.
    """
    if fmt not in FORMATS:
        raise PreferenceError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not 0 <= split < 1:
        raise PreferenceError("the validation share must be at least 0 and below 1")
    targets = split_paths(out, split)
    written = Written()
    temps: dict[str, Path] = {}
    handles = {}
    image_temp = None
    try:
        for name, path in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            temps[name] = Path(temp)
            handles[name] = os.fdopen(fd, "w", encoding="utf-8")
        if images is not None:
            images.parent.mkdir(parents=True, exist_ok=True)
            image_temp = Path(tempfile.mkdtemp(dir=images.parent, prefix=f".{images.name}.")) if not images_as_zip \
                else Path(tempfile.mkstemp(dir=images.parent, prefix=f".{images.name}.", suffix=".part")[1])
        sink = _ImageSink(image_temp, as_zip=images_as_zip)
        for chunk in _chunks(pairs(options), CHUNK):
            questions = Question.objects.select_related("image", "dataset").in_bulk({p.question_id for p in chunk})
            Question.attach_seeds(questions.values())
            texts = dict(Response.objects.filter(pk__in={p.chosen_id for p in chunk} | {p.rejected_id for p in chunk})
                         .values_list("id", "text"))
            for pair in chunk:
                question = questions[pair.question_id]
                side = "validation" if in_validation(question.dataset_id, question.group, fraction=split,
                                                      seed=seed) else "train"
                context = _Context(question, question.dialogue_history or [], _image_name(question))
                index = written.rows["train"] + written.rows["validation"]
                row = _row(fmt, pair, context, texts[pair.chosen_id], texts[pair.rejected_id], index=index, split=side)
                handles[side].write(jsonl_line(row))
                written.rows[side] += 1
                written.by_source_task[(pair.source, question.task)] += 1
                sink.add(question)
            if progress is not None:
                progress(sum(written.rows.values()))
        sink.close()
        written.images = len(sink.written)
        for handle in handles.values():
            handle.close()
        for name, temp in temps.items():
            os.replace(temp, targets[name])
            written.files.append(targets[name])
        if image_temp is not None:
            if images.exists() and images.is_dir():
                shutil.rmtree(images)
            os.replace(image_temp, images)
            written.files.append(images)
        return written
    except BaseException:
        for handle in handles.values():
            handle.close()
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        if image_temp is not None and image_temp.exists():
            shutil.rmtree(image_temp) if image_temp.is_dir() else image_temp.unlink()
        raise


def report_lines(written: Written) -> list[str]:
    lines = [f"{source} {task}: {n}" for (source, task), n in sorted(written.by_source_task.items())]
    lines.append(" ".join(f"{side}={n}" for side, n in written.rows.items()) + f" images={written.images}")
    return lines
