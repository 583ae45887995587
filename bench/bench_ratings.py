"""Ratings benchmark: Bradley-Terry with 1,000 bootstrap resamples over 1,000,000 simulated votes among 50 models.

Votes are aggregated into per-pair outcome counts once; each resample is a multinomial draw over those counts, and
all resamples are fitted together. Prints the time to aggregate the votes and the time to rate them.
"""

import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.ratings import Cells, Vote, ratings_from_cells  # noqa: E402

MODELS, VOTES, BOOTSTRAP = 50, 1_000_000, 1000


def main() -> None:
    rng = np.random.default_rng(0)
    strength = rng.normal(0, 1, MODELS)
    a = rng.integers(0, MODELS, VOTES)
    b = (a + rng.integers(1, MODELS, VOTES)) % MODELS
    p = 1 / (1 + np.exp(strength[b] - strength[a]))
    u = rng.random(VOTES)
    outcome = np.where(u < 0.1, "tie", np.where(u < 0.1 + 0.9 * p, "model_a", "model_b"))
    names = [f"model-{k:02d}" for k in range(MODELS)]
    votes = [Vote(names[x], names[y], w) for x, y, w in zip(a.tolist(), b.tolist(), outcome.tolist(), strict=True)]
    started = time.perf_counter()
    cells = Cells.from_votes(votes)
    aggregated = time.perf_counter()
    ratings = ratings_from_cells(cells, bootstrap=BOOTSTRAP, seed=0)
    done = time.perf_counter()
    widths = [m.upper - m.lower for m in ratings.models]
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"numpy {np.__version__}")
    print(f"{VOTES:,} votes, {MODELS} models, {len(cells.counts):,} cells, {BOOTSTRAP} resamples")
    print(f"aggregate votes into cells: {aggregated - started:.2f} s")
    print(f"fit + bootstrap: {done - aggregated:.2f} s (target < 5 s)")
    print(f"mean 95% interval width: {np.mean(widths):.1f} Elo points")


if __name__ == "__main__":
    main()
