"""Agreement between critic scores and human scores, computed from a weighted table of distinct pairs.

Scores take few distinct values (critics give 1-10, human values are means of 2-3 annotators), so n pairs
collapse into K distinct (critic, human) cells with counts. Every metric is a function of those counts, and a
bootstrap resample of the n pairs is exactly a multinomial draw of n over the K cells, so B replicates cost
B x K work instead of B x n. Pure numpy, no Django; undefined results are None, never NaN.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

Bands = tuple[tuple[int, int], ...]
SCALE = (1, 10)
DEFAULT_BANDS: Bands = ((1, 3), (4, 6), (7, 8), (9, 10))
METRICS = ("mae", "pearson", "spearman", "kendall", "exact", "within1", "band")
_CORRELATIONS = {"pearson", "spearman", "kendall"}
_EPS = 1e-9  # float slack so a difference like 7 - 5.999999999999999 still counts as "within 1"
_CHUNK_CELLS = 2_000_000  # bootstrap rows are processed in chunks of about this many table cells (memory bound)
_MAX_KENDALL_CELLS = 20_000_000  # distinct critic x distinct human values; tau-b uses a dense table of that size


@dataclass(frozen=True)
class Estimate:
    """A point value with an optional 95% interval; value None means undefined."""

    value: float | None
    low: float | None = None
    high: float | None = None

    def display(self, digits: int = 3) -> str:
        """"0.812 [0.790, 0.833]", "0.812" without an interval, "undefined" without a value."""
        if self.value is None:
            return "undefined"
        text = str(self.value) if isinstance(self.value, int) else f"{self.value:.{digits}f}"
        if self.low is not None and self.high is not None:
            text += f" [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return text


@dataclass(frozen=True)
class AlignmentResult:
    """1 / mean spread over rewrite groups; see alignment_score for when value is None."""

    value: float | None
    groups: int
    mean_spread: float | None


_BAND_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_bands(text: str) -> Bands:
    """Parse "1-3,4-6,7-8,9-10" (a lone "5" means 5-5); the bands must tile 1..10 with no gap or overlap."""
    bands = []
    for part in text.split(","):
        match = _BAND_RE.match(part)
        if not match:
            raise ValueError(f"bad band {part.strip()!r}: write bands like '1-3,4-6,7-8,9-10'")
        low = int(match[1])
        bands.append((low, int(match[2]) if match[2] else low))
    return validate_bands(bands)


def validate_bands(bands: Iterable[tuple[int, int]]) -> Bands:
    """Sorted bands, or ValueError unless they cover 1..10 contiguously."""
    ordered = sorted((int(low), int(high)) for low, high in bands)
    if not ordered:
        raise ValueError("no bands given")
    expected = SCALE[0]
    for low, high in ordered:
        if low > high:
            raise ValueError(f"band {low}-{high} is reversed")
        if low < SCALE[0] or high > SCALE[1]:
            raise ValueError(f"band {low}-{high} lies outside the {SCALE[0]}-{SCALE[1]} scale")
        if low < expected:
            raise ValueError(f"band {low}-{high} overlaps the band before it")
        if low > expected:
            raise ValueError(f"gap in bands: {expected}-{low - 1} belongs to no band")
        expected = high + 1
    if expected <= SCALE[1]:
        raise ValueError(f"gap in bands: {expected}-{SCALE[1]} belongs to no band")
    return tuple(ordered)


def _as_scores(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return array


def _clean(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


class PairTable:
    """n (critic x, human y) pairs collapsed into K distinct cells with counts.

    ux/uy are the sorted distinct x/y values, xi/yi each cell's index into them, counts each cell's count.
    """

    def __init__(self, ux: np.ndarray, uy: np.ndarray, xi: np.ndarray, yi: np.ndarray, counts: np.ndarray):
        self.ux, self.uy, self.xi, self.yi, self.counts = ux, uy, xi, yi, counts
        self.x, self.y = ux[xi], uy[yi]

    @classmethod
    def from_pairs(cls, x, y) -> PairTable:
        """Table of the pairs (x[i], y[i]); x is the critic's score, y the human one."""
        x, y = _as_scores(x, "x"), _as_scores(y, "y")
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} scores but y has {len(y)}")
        return cls._collapse(x, y, None)

    @classmethod
    def from_counts(cls, values_x, values_y, counts) -> PairTable:
        """Table from (x, y, count) rows, e.g. a SQL GROUP BY critic, human; repeated (x, y) rows are merged."""
        x, y = _as_scores(values_x, "values_x"), _as_scores(values_y, "values_y")
        c = np.asarray(counts, dtype=np.float64)  # also accepts Decimal / object columns from a database
        if c.ndim != 1 or not len(x) == len(y) == len(c):
            raise ValueError("values_x, values_y and counts must be one-dimensional and of equal length")
        if (not np.isfinite(c).all() or (c < 0).any() or (c != np.round(c)).any()):
            raise ValueError("counts must be non-negative integers")
        keep = c > 0
        return cls._collapse(x[keep], y[keep], c[keep].astype(np.int64))

    @classmethod
    def _collapse(cls, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None) -> PairTable:
        ux, xi = np.unique(x, return_inverse=True)
        uy, yi = np.unique(y, return_inverse=True)
        cells, inverse, counts = np.unique(xi * len(uy) + yi, return_inverse=True, return_counts=True)
        if weights is not None:
            counts = np.zeros(len(cells), dtype=np.int64)
            np.add.at(counts, inverse, weights)  # integer adds keep large counts exact
        return cls(ux, uy, cells // len(uy), cells % len(uy), counts.astype(np.int64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def _point(self, name: str, bands: Bands = DEFAULT_BANDS) -> float | None:
        return _clean(_metrics(self, self.counts[None, :], (name,), validate_bands(bands))[name][0])

    def mae(self) -> float | None:
        return self._point("mae")

    def pearson(self) -> float | None:
        return self._point("pearson")

    def spearman(self) -> float | None:
        return self._point("spearman")

    def kendall_tau_b(self) -> float | None:
        return self._point("kendall")

    def exact(self) -> float | None:
        """Fraction with |x - y| < 0.5: the critic equals the human mean rounded."""
        return self._point("exact")

    def within1(self) -> float | None:
        """Fraction with |x - y| <= 1."""
        return self._point("within1")

    def band_agreement(self, bands: Bands = DEFAULT_BANDS) -> float | None:
        """Fraction with x and y in the same band; values are rounded half up (6.5 -> 7) first."""
        return self._point("band", bands)


def _band_of(values: np.ndarray, bands: Bands) -> np.ndarray:
    """Band index of each value after rounding half up; -1 when it rounds off the 1..10 scale."""
    lookup = np.full(SCALE[1] + 2, -1)
    for index, (low, high) in enumerate(bands):
        lookup[low:high + 1] = index
    rounded = np.clip(np.floor(values + 0.5), 0, SCALE[1] + 1).astype(np.int64)
    return lookup[rounded]


def _marginal(W: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """Per row of W, the total count of each distinct value: shape (B, size)."""
    rows = W.shape[0]
    flat = (np.arange(rows)[:, None] * size + index).ravel()
    return np.bincount(flat, weights=W.ravel(), minlength=rows * size).reshape(rows, size)


def _midranks(marginal: np.ndarray) -> np.ndarray:
    """1-based average rank of each distinct value: its tied block spans C - c + 1 .. C (C = cumulative count)."""
    return np.cumsum(marginal, axis=1) - (marginal - 1) / 2


def _weighted_corr(W: np.ndarray, a: np.ndarray, b: np.ndarray, defined: np.ndarray) -> np.ndarray:
    n = W.sum(axis=1, keepdims=True)
    # Centre first: raw sums of squares of ranks up to 1e6 would lose digits to cancellation.
    da = a - (W * a).sum(axis=1, keepdims=True) / n
    db = b - (W * b).sum(axis=1, keepdims=True) / n
    r = (W * da * db).sum(axis=1) / np.sqrt((W * da * da).sum(axis=1) * (W * db * db).sum(axis=1))
    return np.where(defined, np.clip(r, -1.0, 1.0), np.nan)


def _tau_b(W: np.ndarray, t: PairTable, cx: np.ndarray, cy: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """Kendall tau-b = (P - Q) / sqrt((n0 - n1)(n0 - n2)) from the dense (B, nx, ny) contingency table."""
    T = np.zeros((W.shape[0], len(t.ux), len(t.uy)))
    T[:, t.xi, t.yi] = W
    # higher[b, i, j]: count in rows k > i of column j, i.e. pairs whose x is strictly larger.
    higher = np.cumsum(T[:, ::-1], axis=1)[:, ::-1] - T
    up = np.cumsum(higher[..., ::-1], axis=2)[..., ::-1] - higher  # larger x and larger y: concordant
    down = np.cumsum(higher, axis=2) - higher  # larger x, smaller y: discordant
    p_minus_q = (T * (up - down)).sum(axis=(1, 2))  # each pair counted once, from its smaller-x member
    n = W.sum(axis=1)
    n0 = n * (n - 1) / 2
    n1 = (cx * (cx - 1)).sum(axis=1) / 2  # pairs tied on x
    n2 = (cy * (cy - 1)).sum(axis=1) / 2  # pairs tied on y
    return np.where(defined, p_minus_q / np.sqrt((n0 - n1) * (n0 - n2)), np.nan)


def _metrics(t: PairTable, W: np.ndarray, names: Iterable[str], bands: Bands) -> dict[str, np.ndarray]:
    """Each named metric for every row of W (B x K cell counts); NaN marks rows where it is undefined."""
    W = W.astype(np.float64)  # counts stay exact in float64 below 2**53, and BLAS wants floats
    n = W.sum(axis=1)
    diff = np.abs(t.x - t.y)
    bx, by = _band_of(t.x, bands), _band_of(t.y, bands)
    rates = {"mae": diff, "exact": diff < 0.5, "within1": diff <= 1 + _EPS, "band": (bx == by) & (bx >= 0)}
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in names:
            if name in rates:
                out[name] = W @ rates[name].astype(np.float64) / n
        if _CORRELATIONS & set(names):
            cx, cy = _marginal(W, t.xi, len(t.ux)), _marginal(W, t.yi, len(t.uy))
            # Correlations need both sides to vary; counting distinct values avoids float "almost zero" tests.
            defined = ((cx > 0).sum(axis=1) >= 2) & ((cy > 0).sum(axis=1) >= 2)
            if "pearson" in names:
                out["pearson"] = _weighted_corr(W, t.x, t.y, defined)
            if "spearman" in names:
                out["spearman"] = _weighted_corr(W, _midranks(cx)[:, t.xi], _midranks(cy)[:, t.yi], defined)
            if "kendall" in names:
                if len(t.ux) * len(t.uy) > _MAX_KENDALL_CELLS:
                    raise ValueError("too many distinct score values for the Kendall contingency table")
                out["kendall"] = _tau_b(W, t, cx, cy, defined)
    return out


def _interval(replicates: np.ndarray) -> tuple[float | None, float | None]:
    """Percentile 95% interval over the defined replicates; None when fewer than half are defined."""
    defined = replicates[np.isfinite(replicates)]
    if len(defined) == 0 or 2 * len(defined) < len(replicates):
        return None, None
    low, high = np.percentile(defined, [2.5, 97.5])
    return float(low), float(high)


def agreement_from_table(table: PairTable, *, bands: Bands = DEFAULT_BANDS, n_boot: int = 1000,
                         seed: int = 0) -> dict[str, Estimate]:
    """Every metric of `table` ("n", "mae", "pearson", ...) with a percentile-bootstrap 95% interval."""
    bands = validate_bands(bands)
    n = table.n
    point = _metrics(table, table.counts[None, :], METRICS, bands)
    replicates = None
    if n > 0 and n_boot > 0:
        rng = np.random.default_rng(seed)
        chunk = max(1, _CHUNK_CELLS // max(len(table.counts), len(table.ux) * len(table.uy)))
        parts = []
        for start in range(0, n_boot, chunk):
            # Resampling n pairs with replacement is the same as a multinomial draw of n over the cells.
            W = rng.multinomial(n, table.counts / n, size=min(chunk, n_boot - start))
            parts.append(_metrics(table, W, METRICS, bands))
        replicates = {name: np.concatenate([part[name] for part in parts]) for name in METRICS}
    result = {"n": Estimate(n)}
    for name in METRICS:
        value = _clean(point[name][0])
        low, high = _interval(replicates[name]) if value is not None and replicates is not None else (None, None)
        result[name] = Estimate(value, low, high)
    return result


def agreement(x, y, *, bands: Bands = DEFAULT_BANDS, n_boot: int = 1000, seed: int = 0) -> dict[str, Estimate]:
    """agreement_from_table over the pairs (x[i], y[i]); x is the critic's score, y the human one."""
    return agreement_from_table(PairTable.from_pairs(x, y), bands=bands, n_boot=n_boot, seed=seed)


def krippendorff_alpha_interval(ratings) -> float | None:
    """Krippendorff's alpha, interval metric, for ratings of shape (raters, units) with NaN for missing.

    Units with fewer than 2 ratings are ignored. None when undefined: no pairable values, or all pairable
    values equal (zero expected disagreement).
    """
    r = np.asarray(ratings, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError("ratings must have shape (raters, units)")
    if np.isinf(r).any():
        raise ValueError("ratings contain infinity")
    m = (~np.isnan(r)).sum(axis=0)
    r, m = r[:, m >= 2], m[m >= 2]
    values = r[~np.isnan(r)]
    if len(values) == 0 or values.min() == values.max():
        return None
    n = len(values)
    # Over m values, the sum of squared differences across ordered pairs is 2 m sum((v - mean)^2).
    within = np.nansum((r - np.nansum(r, axis=0) / m) ** 2, axis=0)
    observed = (2 * m * within / (m - 1)).sum() / n
    expected = 2 * ((values - values.mean()) ** 2).sum() / (n - 1)
    return _clean(1 - observed / expected)


def alignment_score(group_ids, scores, *, spread: str = "std") -> AlignmentResult:
    """How stable a model's scores are across rewrites of the same seed question: 1 / mean per-group spread.

    spread is the population std (ddof=0) of each group's scores, or the population variance with
    spread="var". Groups with fewer than 2 scores are skipped. If every group is perfectly stable the mean
    spread is 0 and the score is undefined (infinitely stable): value=None and mean_spread=0.0, which the
    caller can show as "∞ (all groups identical)". With no usable group, value and mean_spread are None.
    """
    if spread not in ("std", "var"):
        raise ValueError(f"spread must be 'std' or 'var', not {spread!r}")
    s = _as_scores(scores, "scores")
    ids = np.asarray(group_ids)
    if ids.ndim != 1 or len(ids) != len(s):
        raise ValueError("group_ids and scores must be one-dimensional and of equal length")
    if len(s) == 0:
        return AlignmentResult(None, 0, None)
    _, first, group, size = np.unique(ids, return_index=True, return_inverse=True, return_counts=True)
    mean = np.bincount(group, weights=s) / size
    var = np.bincount(group, weights=(s - mean[group]) ** 2) / size
    # Rounding leaves an all-equal group of e.g. 0.1s with variance ~1e-34, and 1 / that is nonsense: zero it.
    varies = np.bincount(group, weights=(s != s[first][group]).astype(np.float64)) > 0
    var = np.where(varies, var, 0.0)[size >= 2]
    if len(var) == 0:
        return AlignmentResult(None, 0, None)
    mean_spread = float((np.sqrt(var) if spread == "std" else var).mean())
    return AlignmentResult(None if mean_spread == 0 else 1 / mean_spread, len(var), mean_spread)


def _present(values) -> np.ndarray:
    """Float array of values with None/NaN (missing) removed."""
    if not hasattr(values, "__len__"):
        values = list(values)
    return np.asarray(values, dtype=np.float64).ravel()  # None becomes NaN here


def mean_with_counts(values: Iterable[float | None]) -> tuple[float | None, int]:
    """Mean of the present values (None and NaN are skipped) and how many there were."""
    array = _present(values)
    array = array[~np.isnan(array)]
    return (_clean(array.mean()) if len(array) else None), len(array)


def micro_macro(task_ids, scores) -> tuple[float | None, float | None]:
    """(micro, macro): the mean over all items, and the mean of the per-task means. Missing scores are skipped."""
    s = _present(scores)
    ids = np.asarray(task_ids)
    if ids.ndim != 1 or len(ids) != len(s):
        raise ValueError("task_ids and scores must be one-dimensional and of equal length")
    keep = ~np.isnan(s)
    s, ids = s[keep], ids[keep]
    if len(s) == 0:
        return None, None
    _, task, size = np.unique(ids, return_inverse=True, return_counts=True)
    return _clean(s.mean()), _clean((np.bincount(task, weights=s) / size).mean())
