import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from scipy.optimize import minimize

from evaluation.ratings import (
    SCALE,
    Cells,
    RatingsError,
    Vote,
    compute_ratings,
    fit_log_odds,
    read_arena_jsonl,
    write_arena_jsonl,
)


def simulate(strength: np.ndarray, n: int, *, rng: np.random.Generator, tie_rate: float = 0.0) -> list[Vote]:
    m = len(strength)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    p = 1 / (1 + np.exp(strength[b] - strength[a]))
    u = rng.random(n)
    winners = np.where(u < tie_rate, "tie", np.where(u < tie_rate + (1 - tie_rate) * p, "model_a", "model_b"))
    return [Vote(f"m{x}", f"m{y}", w) for x, y, w in zip(a, b, winners, strict=True)]


def reference_fit(votes: list[Vote], models: list[str]) -> np.ndarray:
    """Logistic regression without intercept on +1/-1 model indicators, by scipy, over the raw rows."""
    index = {m: k for k, m in enumerate(models)}
    a = np.array([index[v.model_a] for v in votes])
    b = np.array([index[v.model_b] for v in votes])
    y = np.array([v.winner == "model_a" for v in votes], dtype=float)

    def nll(t):
        f = np.r_[0.0, t]
        z = f[a] - f[b]
        return np.sum(y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z))

    def grad(t):
        f = np.r_[0.0, t]
        r = y - 1 / (1 + np.exp(-(f[a] - f[b])))
        g = np.zeros(len(models))
        np.add.at(g, a, -r)
        np.add.at(g, b, r)
        return g[1:]

    fit = np.r_[0.0, minimize(nll, np.zeros(len(models) - 1), jac=grad, method="BFGS",
                              options={"gtol": 1e-12, "maxiter": 10_000}).x]
    return fit - fit.mean()


def test_it_matches_scipy_logistic_regression_on_tie_free_votes():
    votes = simulate(np.random.default_rng(3).normal(0, 1, 7), 4000, rng=np.random.default_rng(4))
    cells = Cells.from_votes(votes)
    np.testing.assert_allclose(fit_log_odds(cells), reference_fit(votes, cells.models), atol=1e-6)


def test_it_puts_ratings_on_the_elo_scale_with_mean_1000():
    votes = [Vote("a", "b", "model_a")] * 10 + [Vote("a", "b", "model_b")] * 90
    ratings = compute_ratings(votes, bootstrap=0)
    by = {m.model: m.rating for m in ratings.models}
    assert by["a"] + by["b"] == pytest.approx(2000)
    # 9:1 odds are 400 * log10(9) Elo points apart
    assert by["b"] - by["a"] == pytest.approx(400 * np.log10(9), abs=1e-6)


def test_it_counts_a_tie_as_half_a_win_each_way():
    with_ties = [Vote("a", "b", "model_a")] * 3 + [Vote("a", "b", "tie")] * 2 + [Vote("a", "b", "tie (bothbad)")] * 2
    halves = [Vote("a", "b", "model_a")] * 5 + [Vote("a", "b", "model_b")] * 2
    first, second = compute_ratings(with_ties, bootstrap=0), compute_ratings(halves, bootstrap=0)
    assert [m.rating for m in first.models] == pytest.approx([m.rating for m in second.models], abs=1e-6)
    assert first.win_rate[0][1] == pytest.approx(5 / 7)


def test_it_recovers_known_strengths_with_covering_intervals():
    strength = np.array([-1.2, -0.6, 0.0, 0.5, 1.1])
    truth = 1000 + SCALE * (strength - strength.mean())
    covered = total = 0
    for seed in range(20):
        ratings = compute_ratings(simulate(strength, 3000, rng=np.random.default_rng(seed)),
                                  bootstrap=200, seed=seed)
        assert [m.model for m in ratings.models] == ["m4", "m3", "m2", "m1", "m0"]
        for m in ratings.models:
            total += 1
            covered += m.lower <= truth[int(m.model[1:])] <= m.upper
    # 95% intervals: of 100 (model, simulation) cases, well over 85 should cover the true rating
    assert covered / total >= 0.85


def test_it_ranks_by_interval_overlap():
    votes = simulate(np.array([0.0, 0.02, 2.0]), 3000, rng=np.random.default_rng(0))
    ranks = {m.model: m.rank for m in compute_ratings(votes, bootstrap=200).models}
    assert ranks == {"m2": 1, "m1": 2, "m0": 2}


def test_it_refuses_a_disconnected_comparison_graph_with_a_clear_message():
    votes = [Vote("a", "b", "model_a"), Vote("b", "a", "model_a"), Vote("c", "d", "tie"), Vote("d", "c", "model_a")]
    with pytest.raises(RatingsError, match=r"disconnected: 2 groups.*\{a, b\}; \{c, d\}"):
        compute_ratings(votes)


def test_it_flags_a_model_that_never_lost_as_unbounded():
    votes = [Vote("a", "b", "model_a"), Vote("b", "c", "model_a"), Vote("c", "b", "model_a"), Vote("a", "c", "model_a")]
    ratings = compute_ratings(votes, bootstrap=50)
    assert [m.model for m in ratings.models if m.unbounded] == ["a"]
    assert ratings.models[0].model == "a" and "never lost" in ratings.warnings[0]
    assert all(np.isfinite(m.rating) for m in ratings.models)


def test_it_removes_the_length_effect_when_length_controlled():
    # Equal models; the judge simply prefers the longer answer.
    rng = np.random.default_rng(7)
    votes = []
    for _ in range(3000):
        a, b = rng.choice(["x", "y", "z"], 2, replace=False)
        la, lb = rng.integers(50, 500, 2)
        # model x always writes long answers
        la, lb = (la * 3 if a == "x" else la), (lb * 3 if b == "x" else lb)
        p = 1 / (1 + np.exp(-3 * (la - lb) / (la + lb)))
        votes.append(Vote(str(a), str(b), "model_a" if rng.random() < p else "model_b", length_a=float(la),
                          length_b=float(lb)))
    plain = {m.model: m for m in compute_ratings(votes, bootstrap=0).models}
    controlled = compute_ratings(votes, bootstrap=100, length_controlled=True)
    by = {m.model: m for m in controlled.models}
    assert plain["x"].rating - plain["y"].rating > 100
    assert by["x"].lower < 1000 < by["x"].upper
    assert controlled.length_coefficient == pytest.approx(3 * SCALE, rel=0.15)


def test_it_needs_lengths_for_length_control():
    with pytest.raises(RatingsError, match="length_a and length_b"):
        compute_ratings([Vote("a", "b", "model_a")], length_controlled=True)


def test_it_reads_and_writes_arena_battle_jsonl():
    votes = [Vote("a", "b", "tie (bothbad)", "q1", "alice"), Vote("b", "a", "model_b", "q2", None)]
    assert read_arena_jsonl(write_arena_jsonl(votes).splitlines()) == votes


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "line 1: not JSON"),
    ('{"model_a": "a", "model_b": "a", "winner": "tie"}', "both 'a'"),
    ('{"model_a": "a", "model_b": "b", "winner": "A"}', "winner must be one of"),
    ('{"model_a": "a", "winner": "tie"}', "non-empty strings"),
    ("[1]", "JSON object"),
])
def test_it_names_a_bad_line(line, message):
    with pytest.raises(RatingsError, match=message):
        read_arena_jsonl([line])


def test_it_prints_ratings_as_json(tmp_path, capsys):
    path = tmp_path / "votes.jsonl"
    votes = simulate(np.array([0.0, 1.0, 2.0]), 500, rng=np.random.default_rng(1))
    path.write_text(write_arena_jsonl(votes), encoding="utf-8")
    call_command("pairwise_ratings", "--votes", str(path), "--bootstrap", "100", "--seed", "3", "--json")
    report = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in report["models"]] == ["m2", "m1", "m0"]
    first = report["models"][0]
    assert set(first) >= {"model", "rating", "lower", "upper", "rank", "votes"}
    assert first["lower"] <= first["rating"] <= first["upper"] and report["votes"] == 500


def test_it_reports_a_bad_votes_file_as_a_command_error(tmp_path):
    path = tmp_path / "votes.jsonl"
    path.write_text('{"model_a": "a", "model_b": "b", "winner": "model_a"}\n{"model_a": "c", "model_b": "d", '
                    '"winner": "tie"}\n', encoding="utf-8")
    with pytest.raises(CommandError, match="disconnected"):
        call_command("pairwise_ratings", "--votes", str(path))
    with pytest.raises(CommandError, match="No file"):
        call_command("pairwise_ratings", "--votes", str(tmp_path / "missing.jsonl"))
