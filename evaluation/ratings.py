"""Bradley-Terry ratings from pairwise votes, on the Elo scale, with bootstrap intervals.

Votes collapse into cells (model i, model j, outcome, optional length covariate) with counts; a tie counts half a
win each way, as Chatbot Arena does. A bootstrap resample of the n votes is exactly a multinomial draw of n over
the cells, so B replicates cost B x cells work, not B x n, and all replicates are fitted at once by a batched
Newton method on the (concave) log-likelihood. Pure numpy/scipy, no Django.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
SCALE = 400 / math.log(10)  # Elo points per unit of log-odds: 400 points per factor of 10 in odds
MEAN_RATING = 1000.0
# A vanishing ridge keeps a model that never lost (or never won) finite; on ordinary data its effect on the
# fitted log-odds is below 1e-8, far under any reported digit.
_RIDGE = 1e-9
_MAX_STEP = 5.0  # log-odds; damps Newton's first steps on lopsided data
_MAX_ITER = 200
_TOL = 1e-10


class RatingsError(ValueError):
    """Votes that cannot give ratings (bad line, disconnected comparison graph, no votes)."""


@dataclass(frozen=True)
class Vote:
    model_a: str
    model_b: str
    winner: str  # one of WINNERS
    question_id: str | None = None
    judge: str | None = None
    length_a: float | None = None
    length_b: float | None = None

    def as_arena(self) -> dict:
        """The arena battle JSONL line (lengths only when known)."""
        line = {"question_id": self.question_id, "model_a": self.model_a, "model_b": self.model_b,
                "winner": self.winner, "judge": self.judge}
        if self.length_a is not None and self.length_b is not None:
            line |= {"length_a": self.length_a, "length_b": self.length_b}
        return line


def vote_from_arena(line: Mapping, *, where: str = "line") -> Vote:
    """One arena battle record, checked: two different non-empty model names and a known winner."""
    if not isinstance(line, Mapping):
        raise RatingsError(f"{where}: expected a JSON object")
    model_a, model_b, winner = line.get("model_a"), line.get("model_b"), line.get("winner")
    if not isinstance(model_a, str) or not isinstance(model_b, str) or not model_a or not model_b:
        raise RatingsError(f"{where}: model_a and model_b must be non-empty strings")
    if model_a == model_b:
        raise RatingsError(f"{where}: model_a and model_b are both {model_a!r}")
    if winner not in WINNERS:
        raise RatingsError(f"{where}: winner must be one of {', '.join(WINNERS)}, not {winner!r}")
    lengths = line.get("length_a"), line.get("length_b")
    if any(v is not None and (not isinstance(v, int | float) or v < 0) for v in lengths):
        raise RatingsError(f"{where}: length_a and length_b must be non-negative numbers")
    question = line.get("question_id")
    judge = line.get("judge")
    return Vote(model_a, model_b, winner, None if question is None else str(question),
                None if judge is None else str(judge), *lengths)


def read_arena_jsonl(lines: Iterable[str]) -> list[Vote]:
    """Votes from arena battle JSONL; blank lines are skipped, any bad line is an error naming it."""
    votes = []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise RatingsError(f"line {number}: not JSON ({error.msg})") from None
        votes.append(vote_from_arena(record, where=f"line {number}"))
    return votes


def write_arena_jsonl(votes: Iterable[Vote]) -> str:
    return "".join(json.dumps(v.as_arena(), ensure_ascii=False) + "\n" for v in votes)


@dataclass
class Cells:
    """Distinct (i, j, score of i, covariate) cells with counts; i < j index into models."""

    models: list[str]
    i: np.ndarray
    j: np.ndarray
    y: np.ndarray  # 1: i won, 0: j won, 0.5: tie
    x: np.ndarray | None  # covariate per cell, None without length control
    counts: np.ndarray

    @classmethod
    def from_votes(cls, votes: Iterable[Vote], *, length_controlled: bool = False) -> Cells:
        votes = list(votes)
        if not votes:
            raise RatingsError("no votes")
        models = sorted({v.model_a for v in votes} | {v.model_b for v in votes})
        index = {m: k for k, m in enumerate(models)}
        rows: dict[tuple, int] = {}
        for v in votes:
            a, b = index[v.model_a], index[v.model_b]
            score = 1.0 if v.winner == "model_a" else 0.0 if v.winner == "model_b" else 0.5
            covariate = 0.0
            if length_controlled:
                if v.length_a is None or v.length_b is None:
                    raise RatingsError("length control needs length_a and length_b on every vote")
                total = v.length_a + v.length_b
                covariate = 0.0 if total == 0 else (v.length_a - v.length_b) / total
            if a > b:  # store with i < j: swap sides, so the outcome and the covariate flip
                a, b, score, covariate = b, a, 1.0 - score, -covariate
            key = (a, b, score, covariate)
            rows[key] = rows.get(key, 0) + 1
        keys = np.array(list(rows.keys()), dtype=np.float64)
        return cls(models, keys[:, 0].astype(np.int64), keys[:, 1].astype(np.int64), keys[:, 2],
                   keys[:, 3] if length_controlled else None, np.fromiter(rows.values(), np.float64, len(rows)))


@dataclass
class ModelRating:
    model: str
    rating: float
    lower: float | None
    upper: float | None
    rank: int
    votes: int
    unbounded: bool = False

    def as_dict(self) -> dict:
        def r(v):
            return None if v is None else round(v, 2)
        return {"model": self.model, "rating": r(self.rating), "lower": r(self.lower), "upper": r(self.upper),
                "rank": self.rank, "votes": self.votes, "unbounded": self.unbounded}


@dataclass
class Ratings:
    models: list[ModelRating]  # best first
    votes: int
    bootstrap: int
    win_rate: list[list[float | None]]  # observed, ties half; rows/columns in the order of `models`
    predicted: list[list[float]]  # Bradley-Terry win probability
    length_coefficient: float | None = None  # Elo points for a full length advantage, when length-controlled
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {"models": [m.as_dict() for m in self.models], "votes": self.votes, "bootstrap": self.bootstrap,
               "win_rate": [[None if v is None else round(v, 4) for v in row] for row in self.win_rate],
               "predicted_win_rate": [[round(v, 4) for v in row] for row in self.predicted],
               "warnings": self.warnings}
        if self.length_coefficient is not None:
            out["length_coefficient"] = round(self.length_coefficient, 2)
        return out


def _check_connected(cells: Cells) -> None:
    m = len(cells.models)
    graph = coo_matrix((np.ones(len(cells.i)), (cells.i, cells.j)), shape=(m, m))
    count, labels = connected_components(graph, directed=False)
    if count > 1:
        groups = [sorted(cells.models[k] for k in np.flatnonzero(labels == g)) for g in range(count)]
        shown = "; ".join("{" + ", ".join(g[:5]) + (", ..." if len(g) > 5 else "") + "}" for g in groups[:4])
        raise RatingsError(f"the comparison graph is disconnected: {count} groups of models were never compared "
                           f"with each other ({shown}); ratings across groups are undefined. Add votes between "
                           "the groups or rate each group separately.")


def _unbounded(cells: Cells) -> list[str]:
    """Models whose MLE runs off to +/- infinity: the 'beat' graph (a tie beats both ways) is not strongly
    connected, so some group never lost (or never won) against the rest."""
    m = len(cells.models)
    won_i = cells.y > 0
    won_j = cells.y < 1
    src = np.concatenate([cells.i[won_i], cells.j[won_j]])
    dst = np.concatenate([cells.j[won_i], cells.i[won_j]])
    count, labels = connected_components(coo_matrix((np.ones(len(src)), (src, dst)), shape=(m, m)),
                                         directed=True, connection="strong")
    if count == 1:
        return []
    # The largest strongly connected component is taken as the bounded core; every other model is unbounded.
    core = np.bincount(labels).argmax()
    return [cells.models[k] for k in range(m) if labels[k] != core]


def _fit(cells: Cells, counts: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Newton's method for B replicates at once. counts: B x cells. Returns B x (M [+1]) log-odds, mean 0 over
    the models (the last column is the covariate's coefficient when there is one)."""
    b_count = counts.shape[0]
    m = len(cells.models)
    cov = cells.x is not None
    k = m + int(cov)
    theta = np.zeros((b_count, k)) if start is None else np.array(np.broadcast_to(start, (b_count, k)))
    wins = counts * cells.y
    # Cells of one pair share a prediction's weight structure: sum them per pair before building the Hessian.
    pairs, pair_of = np.unique(np.stack([cells.i, cells.j]), axis=1, return_inverse=True)
    pair_of = pair_of.ravel()
    n_cells, n_pairs = len(cells.i), pairs.shape[1]
    rows = np.arange(n_cells)
    to_pair = csr_matrix((np.ones(n_cells), (rows, pair_of)), shape=(n_cells, n_pairs))
    signed = csr_matrix((np.r_[np.ones(n_cells), -np.ones(n_cells)], (np.r_[rows, rows], np.r_[cells.i, cells.j])),
                        shape=(n_cells, m))
    ends = csr_matrix((np.ones(2 * n_pairs), (np.r_[np.arange(n_pairs), np.arange(n_pairs)],
                                              np.r_[pairs[0], pairs[1]])), shape=(n_pairs, m))
    pi, pj = pairs
    diag = np.arange(m)
    for _ in range(_MAX_ITER):
        z = theta[:, cells.i] - theta[:, cells.j]
        if cov:
            z = z + theta[:, m:m + 1] * cells.x
        p = 1.0 / (1.0 + np.exp(-z))
        resid = wins - counts * p  # d loglik / d z per cell
        weight = counts * p * (1.0 - p)
        grad = np.zeros((b_count, k))
        grad[:, :m] = (signed.T @ resid.T).T
        pair_weight = (to_pair.T @ weight.T).T
        hess = np.zeros((b_count, k, k))
        hess[:, pi, pj] = -pair_weight
        hess[:, pj, pi] = -pair_weight
        hess[:, diag, diag] = (ends.T @ pair_weight.T).T
        if cov:
            grad[:, m] = (resid * cells.x).sum(axis=1)
            col = (signed.T @ (weight * cells.x).T).T
            hess[:, :m, m] = col
            hess[:, m, :m] = col
            hess[:, m, m] = (weight * cells.x * cells.x).sum(axis=1)
        grad -= _RIDGE * theta
        hess[:, np.arange(k), np.arange(k)] += _RIDGE
        # The likelihood does not change when all model log-odds shift together; adding 1 1^T on the model block
        # makes the system solvable, and the step keeps the mean of the model log-odds where it was (0).
        hess[:, :m, :m] += 1.0
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        step = np.clip(step, -_MAX_STEP, _MAX_STEP)
        theta += step
        theta[:, :m] -= theta[:, :m].mean(axis=1, keepdims=True)
        if np.abs(step).max() < _TOL:
            break
    return theta


def fit_log_odds(cells: Cells) -> np.ndarray:
    """The maximum-likelihood log-odds (mean 0) for the observed counts; covariate coefficient last if any."""
    _check_connected(cells)
    return _fit(cells, cells.counts[None, :])[0]


def compute_ratings(votes: Iterable[Vote], *, bootstrap: int = 1000, seed: int | None = 0,
                    length_controlled: bool = False) -> Ratings:
    """Elo-scale Bradley-Terry ratings with bootstrap 95% intervals; RatingsError for unusable votes."""
    if bootstrap < 0:
        raise RatingsError("bootstrap must be 0 or more")
    cells = Cells.from_votes(votes, length_controlled=length_controlled)
    return ratings_from_cells(cells, bootstrap=bootstrap, seed=seed)


def ratings_from_cells(cells: Cells, *, bootstrap: int = 1000, seed: int | None = 0,
                       chunk: int = 250) -> Ratings:
    m = len(cells.models)
    theta = fit_log_odds(cells)
    points = MEAN_RATING + SCALE * theta[:m]
    total = int(cells.counts.sum())
    lower = upper = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        probs = cells.counts / cells.counts.sum()
        reps = []
        for start in range(0, bootstrap, chunk):
            draws = rng.multinomial(total, probs, size=min(chunk, bootstrap - start)).astype(np.float64)
            reps.append(MEAN_RATING + SCALE * _fit(cells, draws, start=theta)[:, :m])
        sample = np.concatenate(reps)
        lower, upper = np.percentile(sample, 2.5, axis=0), np.percentile(sample, 97.5, axis=0)
    unbounded = set(_unbounded(cells))
    games = np.zeros((m, m))
    won = np.zeros((m, m))
    np.add.at(games, (cells.i, cells.j), cells.counts)
    np.add.at(won, (cells.i, cells.j), cells.counts * cells.y)
    np.add.at(won, (cells.j, cells.i), cells.counts * (1 - cells.y))
    games = games + games.T
    votes_per_model = games.sum(axis=1)
    order = np.argsort(-points, kind="stable")
    ranks = [1 + int((lower > upper[k]).sum()) if bootstrap else 1 + int((points > points[k]).sum())
             for k in range(m)]
    models = [ModelRating(cells.models[k], float(points[k]), None if lower is None else float(lower[k]),
                          None if upper is None else float(upper[k]), ranks[k], int(votes_per_model[k]),
                          cells.models[k] in unbounded) for k in order]
    win_rate = [[None if games[a, b] == 0 else float(won[a, b] / games[a, b]) for b in order] for a in order]
    predicted = [[0.5 if a == b else float(1 / (1 + math.exp(theta[b] - theta[a]))) for b in order]
                 for a in order]
    warnings = []
    if unbounded:
        warnings.append(f"{', '.join(sorted(unbounded))}: never lost (or never won) against the other models, so "
                        "the Bradley-Terry rating is unbounded; the figure shown is only a bound. Collect more votes.")
    length = float(SCALE * theta[m]) if cells.x is not None else None
    return Ratings(models, total, bootstrap, win_rate, predicted, length, warnings)
