"""Analysis: critic-human agreement, human-human agreement, the leaderboard, disagreements and exports.

Every number here starts as a SQL GROUP BY that returns a few hundred or thousand rows of counts or sums,
never one row per score: a million critic-human pairs collapse into (critic run, model, task, critic score,
human value, count) cells, which evaluation.metrics turns into estimates with numpy.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    Avg,
    Count,
    Exists,
    F,
    FloatField,
    Max,
    Min,
    OuterRef,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Abs, Cast

from annotation.models import Dataset, HumanScore, Question
from annotation.tasks_catalog import TASKS, Category

from .exchange import jsonl_line
from .metrics import (
    DEFAULT_BANDS,
    METRICS,
    Bands,
    Estimate,
    PairTable,
    agreement_from_table,
)
from .models import CriticRun, CriticScore, InferenceRun, PromptTemplate, Response

HUMAN_MODES = ("mean", "each")
BREAKDOWNS = ("task", "category", "model")
METRIC_LABELS = {
    "mae": "MAE", "pearson": "Pearson", "spearman": "Spearman", "kendall": "Kendall τ-b",
    "exact": "精确 Exact", "within1": "±1 Within-1", "band": "区间 Band",
}
CATEGORY_ABBR = {Category.PERCEPTION.value: "P&U", Category.REASONING.value: "R&A", Category.DIALOGUE.value: "Dia"}


def _q(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model) -> str:
    return _q(model._meta.db_table)


def _placeholders(values: Iterable) -> str:
    return ", ".join(["%s"] * len(list(values)))


def _fetch(sql: str, params: list) -> list[tuple]:
    """Rows of one aggregate query, in one round trip on every database (a larger PostgreSQL work_mem
    for the big ones was measured and barely helped)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def run_labels(run_ids: Iterable[int]) -> dict[int, str]:
    """Model name of each inference run; a model with several runs gets the run number added."""
    runs = list(InferenceRun.objects.filter(pk__in=set(run_ids)).select_related("endpoint").order_by("pk"))
    names = defaultdict(int)
    for run in runs:
        names[run.endpoint.name] += 1
    return {run.pk: run.endpoint.name if names[run.endpoint.name] == 1 else f"{run.endpoint.name} #{run.pk}"
            for run in runs}


# --- critic vs human --------------------------------------------------------------------------------------


def _human_source(mode: str) -> str:
    """A derived table (response_id, y): the mean of annotators per response, or each annotator's score."""
    hs = _table(HumanScore)
    if mode == "each":
        return f"SELECT response_id, CAST(score AS FLOAT) AS y FROM {hs}"
    # CAST before AVG: PostgreSQL would otherwise return numeric, SQLite and PostgreSQL now agree on float.
    return f"SELECT response_id, AVG(CAST(score AS FLOAT)) AS y FROM {hs} GROUP BY response_id"


@dataclass
class PairCells:
    """Critic-human cells from SQL: one row per (critic run, inference run, task, critic score, human value)."""

    critic: np.ndarray
    run: np.ndarray
    task: np.ndarray
    x: np.ndarray  # NaN: unparsed (no critic score)
    y: np.ndarray
    count: np.ndarray

    def select(self, mask: np.ndarray) -> tuple[PairTable, int]:
        parsed = mask & ~np.isnan(self.x)
        table = PairTable.from_counts(self.x[parsed], self.y[parsed], self.count[parsed])
        return table, int(self.count[mask & np.isnan(self.x)].sum())


def pair_cells(*, critic_run_ids: list[int], human: str = "mean", by_task: bool = True,
               by_model: bool = True) -> PairCells:
    """Critic scores of these runs against human scores of the same responses, counted in SQL.

    Only the dimensions asked for are grouped on: per model x per task cells would be 50 times more rows.
    """
    if human not in HUMAN_MODES:
        raise ValueError(f"human must be one of {HUMAN_MODES}")
    empty = np.array([])
    if not critic_run_ids:
        return PairCells(empty, empty, empty.astype(object), empty, empty, empty)
    task = "q.task" if by_task else "''"
    run = "r.run_id" if by_model else "0"
    join_question = f"JOIN {_table(Question)} q ON q.id = r.question_id" if by_task else ""
    if human == "mean":
        # The mean of annotators comes from the count and sum kept on each response (exact integers,
        # divided in numpy), so no per-request aggregation of every human score.
        human_join, human_columns = "", "r.human_sum, r.human_count"
        human_filter = "AND r.human_count > 0"
    else:
        human_join = f"JOIN ({_human_source(human)}) h ON h.response_id = cs.response_id"
        human_columns, human_filter = "h.y, 1", ""
    sql = f"""
        SELECT cs.critic_run_id, {run}, {task}, cs.score, {human_columns}, COUNT(*)
        FROM {_table(CriticScore)} cs
        JOIN {_table(Response)} r ON r.id = cs.response_id
        {human_join}
        {join_question}
        WHERE cs.critic_run_id IN ({_placeholders(critic_run_ids)}) {human_filter}
        GROUP BY {", ".join(c for c in ("cs.critic_run_id", run, task, "cs.score", *human_columns.split(", "))
                            if "." in c)}
    """
    rows = _fetch(sql, list(critic_run_ids))
    if not rows:
        return PairCells(empty, empty, empty.astype(object), empty, empty, empty)
    critic, run_ids, tasks, x, y_sum, y_count, count = zip(*rows, strict=True)
    y = np.asarray(y_sum, dtype=np.float64) / np.asarray(y_count, dtype=np.float64)
    return PairCells(np.array(critic), np.array(run_ids), np.array(tasks, dtype=object),
                     np.array([np.nan if v is None else v for v in x], dtype=np.float64),
                     y, np.asarray(count, dtype=np.int64))


@dataclass
class AgreementRow:
    """One critic's agreement over one slice (overall, a task, a category, a model)."""

    critic_run: int
    critic: str
    key: str
    label: str
    n: int
    unparsed: int
    metrics: dict[str, Estimate]

    @property
    def cells(self) -> list[Estimate]:
        return [self.metrics[name] for name in METRICS]

    def as_dict(self) -> dict:
        return {"critic_run": self.critic_run, "critic": self.critic, "key": self.key, "label": self.label,
                "n": self.n, "unparsed": self.unparsed,
                **{name: _estimate_dict(self.metrics[name]) for name in METRICS}}


def _estimate_dict(estimate: Estimate) -> dict:
    return {"value": estimate.value, "low": estimate.low, "high": estimate.high}


@dataclass
class Heatmap:
    critic_run: int
    critic: str
    counts: list[list[int]]  # [critic score 1..10][human score 1..10, the mean rounded half up]
    total: int


@dataclass
class AgreementReport:
    critic_runs: list[CriticRun]
    human: str
    bands: Bands
    overall: list[AgreementRow]
    breakdowns: dict[str, list[AgreementRow]]
    heatmaps: list[Heatmap]
    distributions: list[dict]  # per model: critic score histogram per critic run and the human one
    humans: HumanAgreement | None = None

    def as_dict(self) -> dict:
        return {
            "human": self.human, "bands": [list(b) for b in self.bands],
            "critic_runs": [{"id": run.pk, "label": run.label} for run in self.critic_runs],
            "overall": [row.as_dict() for row in self.overall],
            "breakdowns": {name: [row.as_dict() for row in rows] for name, rows in self.breakdowns.items()},
            "humans": self.humans.as_dict() if self.humans else None,
        }


def _row(run: CriticRun, key: str, label: str, cells: PairCells, mask: np.ndarray, *, bands: Bands,
         n_boot: int) -> AgreementRow:
    table, unparsed = cells.select(mask)
    metrics = agreement_from_table(table, bands=bands, n_boot=n_boot)
    return AgreementRow(run.pk, run.label, key, label, table.n, unparsed, metrics)


def task_label(task: str) -> str:
    info = TASKS[task]
    return f"{info.zh} {info.task} ({info.abbreviation})"


def agreement_report(*, critic_runs: list[CriticRun], human: str = "mean", bands: Bands = DEFAULT_BANDS,
                     breakdowns: Iterable[str] = BREAKDOWNS, n_boot: int = 1000,
                     with_humans: bool = True) -> AgreementReport:
    """Every critic run against the humans, overall and per slice, critics side by side."""
    breakdowns = list(breakdowns)
    by_model = "model" in breakdowns
    cells = pair_cells(critic_run_ids=[run.pk for run in critic_runs], human=human,
                       by_task=bool({"task", "category"} & set(breakdowns)), by_model=by_model)
    labels = run_labels(set(cells.run.tolist())) if by_model else {}
    category = np.array([TASKS[t].category if t in TASKS else "" for t in cells.task], dtype=object)
    overall, by = [], {name: [] for name in breakdowns}
    for run in critic_runs:
        mine = cells.critic == run.pk
        overall.append(_row(run, "all", "全部 Overall", cells, mine, bands=bands, n_boot=n_boot))
    slices = {
        "task": [(t, task_label(t), cells.task == t) for t in TASKS if (cells.task == t).any()],  # noqa: E501
        "category": [(c.value, c.label, category == c.value) for c in Category if (category == c.value).any()],
        "model": [(str(pk), labels.get(pk, f"run {pk}"), cells.run == pk)
                  for pk in sorted(labels, key=labels.get)] if by_model else [],
    }
    for name in by:
        for key, label, mask in slices[name]:
            for run in critic_runs:
                if (mask & (cells.critic == run.pk)).any():
                    by[name].append(_row(run, key, label, cells, mask & (cells.critic == run.pk), bands=bands,
                                         n_boot=n_boot))
    humans = human_agreement(inference_run_ids=inference_run_ids_of(critic_runs), bands=bands,
                             n_boot=n_boot) if with_humans else None
    return AgreementReport(critic_runs, human, bands, overall, by, _heatmaps(cells, critic_runs),
                           _distributions(cells, critic_runs, labels) if by_model else [], humans)


def inference_run_ids_of(critic_runs: list[CriticRun]) -> list[int]:
    """The inference runs these critic runs scored."""
    through = CriticRun.inference_runs.through
    return sorted(set(through.objects.filter(criticrun_id__in=[r.pk for r in critic_runs])
                      .values_list("inferencerun_id", flat=True)))


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(values + 0.5), 1, 10).astype(np.int64)


def _heatmaps(cells: PairCells, critic_runs: list[CriticRun]) -> list[Heatmap]:
    maps = []
    parsed = ~np.isnan(cells.x)
    for run in critic_runs:
        m = parsed & (cells.critic == run.pk)
        grid = np.zeros((10, 10), dtype=np.int64)
        np.add.at(grid, (cells.x[m].astype(np.int64) - 1, _round_half_up(cells.y[m]) - 1), cells.count[m])
        maps.append(Heatmap(run.pk, run.label, grid.tolist(), int(grid.sum())))
    return maps


def _distributions(cells: PairCells, critic_runs: list[CriticRun], labels: dict[int, str]) -> list[dict]:
    """Per model: how often each score 1..10 was given, by each critic and by the humans (mean rounded)."""
    out = []
    parsed = ~np.isnan(cells.x)
    for pk in sorted(labels, key=labels.get):
        mine = cells.run == pk
        series = []
        for run in critic_runs:
            m = mine & parsed & (cells.critic == run.pk)
            series.append({"label": run.label, "counts": np.bincount(cells.x[m].astype(np.int64), cells.count[m],
                                                                     minlength=11)[1:11].astype(int).tolist()})
        # Humans once: the first critic run's rows carry each response's human value once.
        first = mine & (cells.critic == critic_runs[0].pk) if critic_runs else mine
        series.append({"label": "人工 Human", "counts": np.bincount(_round_half_up(cells.y[first]), cells.count[first],
                                                                   minlength=11)[1:11].astype(int).tolist()})
        out.append({"model": labels[pk], "series": series})
    return out


def data_fingerprint(*, critic_run_ids: Iterable[int] = ()) -> str:
    """A cheap summary that changes whenever a human score or one of these runs' critic scores changes.

    Two aggregates without joins (~0.2 s over a million rows, against seconds for the report itself): human
    scores' count, sum and newest edit, and per critic run the count, parsed count, sum and newest id.
    """
    hs, cs = _table(HumanScore), _table(CriticScore)
    parts = [_fetch(f"SELECT COUNT(*), SUM(score), MAX(updated_at) FROM {hs}", [])]
    ids = sorted(set(critic_run_ids))
    if ids:
        parts.append(_fetch(f"SELECT critic_run_id, COUNT(*), COUNT(score), SUM(score), MAX(id) FROM {cs} "
                            f"WHERE critic_run_id IN ({_placeholders(ids)}) GROUP BY critic_run_id "
                            f"ORDER BY critic_run_id", ids))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _cached(key_parts: tuple, compute):
    """compute() once per distinct key; the key includes a data fingerprint, so any new score recomputes."""
    key = "analysis:" + hashlib.sha256(repr(key_parts).encode()).hexdigest()
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, CACHE_SECONDS)
    return value


CACHE_SECONDS = 24 * 3600


def agreement_report_cached(*, critic_runs: list[CriticRun], human: str = "mean", bands: Bands = DEFAULT_BANDS,
                            breakdowns: Iterable[str] = BREAKDOWNS) -> AgreementReport:
    """agreement_report, served from the cache while no score has changed (the bootstrap seed is fixed, so a
    recomputation gives the same numbers anyway)."""
    breakdowns = list(breakdowns)
    runs = tuple((run.pk, run.label, str(run.updated_at)) for run in critic_runs)
    key = ("agreement", runs, human, bands, tuple(breakdowns), data_fingerprint(critic_run_ids=[r[0] for r in runs]))
    return _cached(key, lambda: agreement_report(critic_runs=critic_runs, human=human, bands=bands,
                                                 breakdowns=breakdowns, with_humans=False))


def human_agreement_cached(*, inference_run_ids: list[int], bands: Bands = DEFAULT_BANDS) -> HumanAgreement:
    key = ("humans", tuple(sorted(inference_run_ids)), bands, data_fingerprint())
    return _cached(key, lambda: human_agreement(inference_run_ids=inference_run_ids, bands=bands))


# --- human vs human ---------------------------------------------------------------------------------------


@dataclass
class HumanAgreement:
    alpha: float | None
    units: int  # responses scored by at least two people
    pooled: dict[str, Estimate] | None
    pairs: list[dict] = field(default_factory=list)  # per annotator pair: a, b, n, metrics, cells

    @property
    def pooled_cells(self) -> list[Estimate]:
        return [self.pooled[name] for name in METRICS] if self.pooled else []

    @property
    def pooled_n(self) -> int:
        return self.pooled["n"].value if self.pooled else 0

    def as_dict(self) -> dict:
        return {"krippendorff_alpha_interval": self.alpha, "units": self.units,
                "pooled": {k: _estimate_dict(v) for k, v in self.pooled.items()} if self.pooled else None,
                "pairs": [{"a": p["a"], "b": p["b"], "n": p["n"],
                           **{k: _estimate_dict(p["metrics"][k]) for k in METRICS}} for p in self.pairs]}


def alpha_from_unit_stats(m, s, ss, count) -> float | None:
    """Krippendorff's alpha (interval) from per-unit (ratings, sum, sum of squares) with how many units share them.

    The same formula as metrics.krippendorff_alpha_interval, written over sufficient statistics so SQL can
    hand over a few hundred distinct rows instead of every rating.
    """
    m, s, ss, c = (np.asarray(a, dtype=np.float64) for a in (m, s, ss, count))
    keep = (m >= 2) & (c > 0)
    m, s, ss, c = m[keep], s[keep], ss[keep], c[keep]
    n = float((m * c).sum())
    if n == 0:
        return None
    total, total_sq = float((s * c).sum()), float((ss * c).sum())
    spread = total_sq - total * total / n
    if spread <= 1e-9 * max(1.0, total_sq):  # every pairable value equal: no expected disagreement
        return None
    within = ss - s * s / m
    observed = float((c * 2 * m * within / (m - 1)).sum()) / n
    expected = 2 * spread / (n - 1)
    return 1 - observed / expected


def human_agreement(*, inference_run_ids: list[int], bands: Bands = DEFAULT_BANDS, n_boot: int = 1000,
                    max_pairs: int = 20) -> HumanAgreement:
    """Agreement between annotators on the responses of these inference runs."""
    if not inference_run_ids:
        return HumanAgreement(None, 0, None)
    hs, resp = _table(HumanScore), _table(Response)
    runs = _placeholders(inference_run_ids)
    units = _fetch(f"""
        SELECT m, s, ss, COUNT(*) FROM (
            SELECT COUNT(*) AS m, SUM(hs.score) AS s, SUM(hs.score * hs.score) AS ss
            FROM {hs} hs JOIN {resp} r ON r.id = hs.response_id
            WHERE r.run_id IN ({runs}) GROUP BY hs.response_id HAVING COUNT(*) >= 2
        ) u GROUP BY m, s, ss""", list(inference_run_ids))
    alpha = alpha_from_unit_stats(*zip(*units, strict=True)) if units else None
    unit_count = sum(row[3] for row in units)
    rows = _fetch(f"""
        SELECT a.annotator_id, b.annotator_id, a.score, b.score, COUNT(*)
        FROM {hs} a JOIN {hs} b ON b.response_id = a.response_id AND b.annotator_id > a.annotator_id
        JOIN {resp} r ON r.id = a.response_id
        WHERE r.run_id IN ({runs})
        GROUP BY a.annotator_id, b.annotator_id, a.score, b.score""", list(inference_run_ids))
    if not rows:
        return HumanAgreement(alpha, unit_count, None)
    a, b, sa, sb, n = (np.asarray(col) for col in zip(*rows, strict=True))
    pooled = agreement_from_table(PairTable.from_counts(sa, sb, n), bands=bands, n_boot=n_boot)
    totals = defaultdict(int)
    for ai, bi, ni in zip(a.tolist(), b.tolist(), n.tolist(), strict=True):
        totals[(ai, bi)] += ni
    top = sorted(totals, key=lambda k: -totals[k])[:max_pairs]
    from django.contrib.auth import get_user_model

    names = dict(get_user_model().objects.filter(pk__in={x for p in top for x in p}).values_list("pk", "username"))
    pairs = []
    for ai, bi in top:
        m = (a == ai) & (b == bi)
        metrics = agreement_from_table(PairTable.from_counts(sa[m], sb[m], n[m]), bands=bands, n_boot=n_boot)
        pairs.append({"a": names.get(ai, ai), "b": names.get(bi, bi), "n": totals[(ai, bi)], "metrics": metrics,
                      "cells": [metrics[name] for name in METRICS]})
    return HumanAgreement(alpha, unit_count, pooled, pairs)


# --- leaderboard ------------------------------------------------------------------------------------------


SOURCES = ("critic", "human")
SCORE_FIELDS = ("score", "expected")
SPREADS = ("std", "var")


@dataclass
class LeaderboardRow:
    run_id: int
    model: str
    tasks: dict[str, float | None]  # by task name
    task_counts: dict[str, int]
    categories: dict[str, float | None]
    micro: float | None
    macro: float | None
    alignment: float | None
    alignment_groups: int
    mean_spread: float | None
    n: int
    unparsed: int

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "model": self.model,
                "tasks": {TASKS[t].abbreviation: v for t, v in self.tasks.items()},
                "task_counts": {TASKS[t].abbreviation: v for t, v in self.task_counts.items()},
                "categories": self.categories, "micro": self.micro, "macro": self.macro,
                "alignment": self.alignment, "alignment_groups": self.alignment_groups,
                "mean_spread": self.mean_spread, "n": self.n, "unparsed": self.unparsed}


@dataclass
class Leaderboard:
    dataset: Dataset
    source: str
    critic_run: CriticRun | None
    score_field: str
    spread: str
    rows: list[LeaderboardRow]

    def as_dict(self) -> dict:
        return {"dataset": self.dataset.name, "source": self.source,
                "critic_run": self.critic_run.pk if self.critic_run else None, "score": self.score_field,
                "spread": self.spread, "rows": [row.as_dict() for row in self.rows]}


def default_critic_run(dataset: Dataset) -> CriticRun | None:
    """The newest critic run over this dataset's answers, finished ones first."""
    runs = CriticRun.objects.filter(inference_runs__dataset=dataset).distinct()
    return runs.filter(status=CriticRun.Status.DONE).order_by("-created_at", "-pk").first() or \
        runs.order_by("-created_at", "-pk").first()


def _task_stats(*, dataset: Dataset, source: str, critic_run: CriticRun | None, score_field: str,
                spread: str) -> list[tuple]:
    """Per (inference run, task): scored count, sum, missing count, rewrite groups with 2+ scores and the sum of
    their spreads. Two GROUP BYs in SQL (per rewrite group, then per task), so a few hundred rows come back."""
    resp, quest = _table(Response), _table(Question)
    group = _q("group")
    if source == "critic":
        value = "cs.score" if score_field == "score" else "cs.expected_score"
        source_sql = f"FROM {_table(CriticScore)} cs JOIN {resp} r ON r.id = cs.response_id"
        where, params = "cs.critic_run_id = %s", [critic_run.pk if critic_run else 0]
    else:
        value = "h.y"
        source_sql = (f"FROM {resp} r JOIN {_table(InferenceRun)} ir ON ir.id = r.run_id "
                      f"LEFT JOIN ({_human_source('mean')}) h ON h.response_id = r.id")
        where, params = "ir.dataset_id = %s AND r.error = ''", [dataset.pk]
    # Population variance of a group; an all-equal group is exactly 0 (float sums could leave 1e-16), and
    # float slack never makes it negative. SQRT exists in PostgreSQL and Django registers it for SQLite.
    variance = "CASE WHEN g.hi > g.lo AND g.ss / g.n - (g.s / g.n) * (g.s / g.n) > 0 " \
               "THEN g.ss / g.n - (g.s / g.n) * (g.s / g.n) ELSE 0 END"
    spread_sql = f"SQRT({variance})" if spread == "std" else variance
    sql = f"""
        SELECT g.run_id, g.task, SUM(g.n), SUM(g.s), SUM(g.missing),
               SUM(CASE WHEN g.n >= 2 THEN 1 ELSE 0 END), SUM(CASE WHEN g.n >= 2 THEN {spread_sql} ELSE 0 END)
        FROM (
            SELECT r.run_id AS run_id, q.task AS task, COUNT({value}) AS n, SUM(CAST({value} AS FLOAT)) AS s,
                   SUM(CAST({value} AS FLOAT) * {value}) AS ss, MIN({value}) AS lo, MAX({value}) AS hi,
                   COUNT(*) - COUNT({value}) AS missing
            {source_sql} JOIN {quest} q ON q.id = r.question_id
            WHERE {where} AND q.dataset_id = %s
            GROUP BY r.run_id, q.task, q.{group}
        ) g GROUP BY g.run_id, g.task"""
    return _fetch(sql, [*params, dataset.pk])


def leaderboard(*, dataset: Dataset, source: str = "critic", critic_run: CriticRun | None = None,
                score_field: str = "score", spread: str = "std") -> Leaderboard:
    """Models x tasks, category and overall means, and the alignment score over rewrite groups."""
    if source not in SOURCES or score_field not in SCORE_FIELDS or spread not in SPREADS:
        raise ValueError("bad leaderboard option")
    if source == "critic" and critic_run is None:
        critic_run = default_critic_run(dataset)
    stats = _task_stats(dataset=dataset, source=source, critic_run=critic_run, score_field=score_field,
                        spread=spread)
    per_run: dict[int, dict[str, tuple]] = defaultdict(dict)
    for run_id, task, n, total, missing, groups, spreads in stats:
        per_run[run_id][task] = (int(n or 0), float(total or 0), int(missing or 0), int(groups or 0),
                                 float(spreads or 0))
    labels = run_labels(per_run)
    rows = []
    for pk, by_task in per_run.items():
        tasks = {t: (by_task[t][1] / by_task[t][0] if t in by_task and by_task[t][0] else None) for t in TASKS}
        counts = {t: by_task[t][0] if t in by_task else 0 for t in TASKS}
        categories = {}
        for c in Category:
            values = [tasks[t] for t in TASKS if TASKS[t].category == c.value and tasks[t] is not None]
            categories[c.value] = sum(values) / len(values) if values else None
        n = sum(v[0] for v in by_task.values())
        groups = sum(v[3] for v in by_task.values())
        mean_spread = sum(v[4] for v in by_task.values()) / groups if groups else None
        present = [v for v in tasks.values() if v is not None]
        rows.append(LeaderboardRow(
            pk, labels.get(pk, f"run {pk}"), tasks, counts, categories,
            sum(v[1] for v in by_task.values()) / n if n else None,
            sum(present) / len(present) if present else None,
            1 / mean_spread if mean_spread else None, groups, mean_spread, n,
            sum(v[2] for v in by_task.values())))
    return Leaderboard(dataset, source, critic_run, score_field, spread, rows)


LEADERBOARD_SORTS = {"model", "micro", "macro", "alignment", "groups", "n", "unparsed",
                     *(info.abbreviation for info in TASKS.values()), *CATEGORY_ABBR.values()}


def leaderboard_sort(rows: list[LeaderboardRow], *, key: str = "micro", descending: bool = True) -> list[LeaderboardRow]:
    """Rows sorted by a column; empty values always last."""
    by_abbr = {info.abbreviation: info.task for info in TASKS.values()}
    by_cat = {abbr: cat for cat, abbr in CATEGORY_ABBR.items()}

    def value(row: LeaderboardRow):
        if key == "model":
            return row.model
        if key in by_abbr:
            return row.tasks[by_abbr[key]]
        if key in by_cat:
            return row.categories[by_cat[key]]
        if key == "groups":
            return row.alignment_groups
        return getattr(row, key)

    present = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    return sorted(present, key=value, reverse=descending) + missing


def leaderboard_columns(*, spread: str) -> list[tuple[str, tuple[str, str]]]:
    """The leaderboard page's columns: (sort key, (header, tooltip)), in the order of its cells."""
    return [("model", ("模型 Model", "")),
            *((t.abbreviation, (t.abbreviation, f"{t.zh} {t.task}")) for t in TASKS.values()),
            *((abbr, (abbr, category)) for category, abbr in CATEGORY_ABBR.items()),
            ("micro", ("Micro", "mean over all answers")), ("macro", ("Macro", "mean of the task means")),
            ("alignment", (f"Align ({spread})", "1 / mean spread over rewrite groups")),
            ("groups", ("Groups", "rewrite groups with 2+ scored variants")), ("n", ("N", "scored answers")),
            ("unparsed", ("未解析 Unparsed", "critiques without a score / answers nobody scored"))]


def leaderboard_page_rows(rows: list[LeaderboardRow]) -> list[dict]:
    """Each row's score cells in the order of ``leaderboard_columns`` (tasks, categories, micro, macro)."""
    return [{"model": row.model, "row": row,
             "values": [*(row.tasks[t] for t in TASKS), *(row.categories[c] for c in CATEGORY_ABBR),
                        row.micro, row.macro]} for row in rows]


def leaderboard_table(board: Leaderboard, rows: list[LeaderboardRow]) -> tuple[list[str], list[list[str]]]:
    """Header and cells as text, for CSV and Markdown."""
    header = ["Model", *(i.abbreviation for i in TASKS.values()), *CATEGORY_ABBR.values(), "Micro", "Macro",
              f"Align ({board.spread})", "Groups", "N", "Unparsed"]

    def f(v, digits=2):
        return "" if v is None else f"{v:.{digits}f}"

    body = [[row.model, *(f(row.tasks[t]) for t in TASKS), *(f(row.categories[c]) for c in CATEGORY_ABBR),
             f(row.micro), f(row.macro), "∞" if row.alignment is None and row.mean_spread == 0 else f(row.alignment),
             str(row.alignment_groups), str(row.n), str(row.unparsed)] for row in rows]
    return header, body


def leaderboard_markdown(board: Leaderboard, rows: list[LeaderboardRow]) -> str:
    header, body = leaderboard_table(board, rows)

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


# --- disagreements ----------------------------------------------------------------------------------------


def disagreements(*, critic_run_ids: list[int] | None = None, task: str = "", run_id: int | None = None,
                  min_gap: float = 0.0, annotator_id: int | None = None) -> QuerySet[CriticScore]:
    """Parsed critic scores with human scores, the biggest |critic - human mean| first."""
    human_mean = (HumanScore.objects.filter(response=OuterRef("response")).values("response")
                  .annotate(m=Avg(Cast("score", FloatField()))).values("m"))
    human_count = (HumanScore.objects.filter(response=OuterRef("response")).values("response")
                   .annotate(c=Count("id")).values("c"))
    qs = (CriticScore.objects.filter(score__isnull=False)
          .annotate(human_mean=Subquery(human_mean), human_count=Subquery(human_count))
          .filter(human_mean__isnull=False)
          .annotate(gap=Abs(Cast(F("score"), FloatField()) - F("human_mean")))
          .select_related("critic_run__critic", "response__question", "response__run__endpoint")
          .order_by("-gap", "id"))
    if critic_run_ids:
        qs = qs.filter(critic_run_id__in=critic_run_ids)
    if task:
        qs = qs.filter(response__question__task=task)
    if run_id:
        qs = qs.filter(response__run_id=run_id)
    if min_gap:
        qs = qs.filter(gap__gte=min_gap)
    if annotator_id:
        qs = qs.filter(Exists(HumanScore.objects.filter(response=OuterRef("response"), annotator_id=annotator_id)))
    return qs


DISAGREEMENT_CSV_HEADER = ["critic_score_id", "question_id", "task", "model", "critic_run", "critic_score",
                           "human_mean", "human_count", "gap", "response_id"]


def disagreement_csv_rows(qs: QuerySet[CriticScore]) -> Iterator[list]:
    for s in qs.iterator(chunk_size=2000):
        yield [s.pk, s.response.question.question_id, s.response.question.task, s.response.run.endpoint.name,
               s.critic_run.label, s.score, f"{s.human_mean:.3f}", s.human_count, f"{s.gap:.3f}", s.response_id]


# --- critic training set ----------------------------------------------------------------------------------


AGREEMENT_LEVELS = {"any": None, "within1": 1, "exact": 0}


def training_prompt(*, template: PromptTemplate, response: Response, seeds: dict[tuple[int, str], tuple[str, list]]) -> str:
    """The critic prompt of a human-scored response, as a critic would be sent it (critics.critic_prompt),
    with the seed of each rewrite group looked up once and kept in ``seeds``: (dataset, group) -> (reference,
    history). Rewrites keep their reference and dialogue on the seed."""
    from .prompts import render_critic_prompt

    question = response.question
    key = (question.dataset_id, question.group)
    if key not in seeds:
        seeds[key] = (question.reference_answer, question.dialogue_history)
    reference, history = seeds[key] if not question.history else (seeds[key][0], question.history)
    return render_critic_prompt(template.body, task=question.task, history=history, question=question.text,
                                reference=reference, answer=response.text, task_rules=template.task_rules)


def training_set_lines(*, template: PromptTemplate, dataset: Dataset | None = None,
                       annotator_ids: list[int] | None = None, agreement: str = "any",
                       min_annotators: int = 1) -> Iterator[str]:
    """Chat-format JSONL lines: the critic prompt for a human-scored response, the human score as the target.

    One line per human score. `agreement` keeps only responses whose annotators are within that many points
    of each other (over every annotator of the response, not just the chosen ones); `min_annotators` asks for
    at least that many people on the response.
    """
    if agreement not in AGREEMENT_LEVELS:
        raise ValueError(f"agreement must be one of {sorted(AGREEMENT_LEVELS)}")
    stats = (HumanScore.objects.filter(response=OuterRef("response_id")).values("response")
             .annotate(lo=Min("score"), hi=Max("score"), k=Count("id")))
    scores = (HumanScore.objects
              .annotate(k=Subquery(stats.values("k")),
                        width=Subquery(stats.annotate(w=F("hi") - F("lo")).values("w")))
              .filter(k__gte=min_annotators, response__error="")
              .select_related("response__question", "annotator").order_by("response_id", "annotator_id"))
    if AGREEMENT_LEVELS[agreement] is not None:
        scores = scores.filter(width__lte=AGREEMENT_LEVELS[agreement])
    if dataset is not None:
        scores = scores.filter(response__question__dataset=dataset)
    if annotator_ids:
        scores = scores.filter(annotator_id__in=annotator_ids)
    seeds: dict[tuple[int, str], tuple[str, list]] = {}
    for score in scores.iterator(chunk_size=1000):
        question = score.response.question
        prompt = training_prompt(template=template, response=score.response, seeds=seeds)
        target = json.dumps({"Rating": score.score, "Reason": score.rationale}, ensure_ascii=False)
        yield jsonl_line({
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": target}],
            "meta": {"question_id": question.question_id, "task": question.task, "response_id": score.response_id,
                     "annotator": score.annotator.username, "template": str(template), "annotators": score.k},
        })

