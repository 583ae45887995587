"""The analysis layer: SQL aggregation must give exactly what computing from the raw pairs gives."""

import math

import numpy as np
import pytest

from annotation.models import HumanScore
from evaluation import analysis
from evaluation.metrics import (
    PairTable,
    agreement,
    agreement_from_table,
    alignment_score,
    krippendorff_alpha_interval,
    micro_macro,
    parse_bands,
)
from evaluation.models import CriticScore
from tests.evaluation.analysis_data import hand_world, random_world


@pytest.fixture
def world(db):
    return random_world()


@pytest.fixture
def hand(db):
    return hand_world()


def _raw_pairs(critic_run, *, human="mean", task=None, run=None):
    """Critic-human pairs the slow way: one Python object per score."""
    x, y, unparsed = [], [], 0
    for cs in CriticScore.objects.filter(critic_run=critic_run).select_related("response__question"):
        if task and cs.response.question.task != task or run and cs.response.run_id != run.pk:
            continue
        humans = [h.score for h in HumanScore.objects.filter(response_id=cs.response_id)]
        if not humans:
            continue
        values = [sum(humans) / len(humans)] if human == "mean" else humans
        for value in values:
            if cs.score is None:
                unparsed += 1
            else:
                x.append(cs.score)
                y.append(value)
    return x, y, unparsed


@pytest.mark.parametrize("human", ["mean", "each"])
def test_it_aggregates_in_sql_exactly_like_the_raw_pairs(world, human):
    bands = parse_bands("1-4,5-7,8-10")
    report = analysis.agreement_report(critic_runs=world["critics"], human=human, bands=bands, n_boot=200,
                                       with_humans=False)
    for row in report.overall:
        x, y, unparsed = _raw_pairs(next(c for c in world["critics"] if c.pk == row.critic_run), human=human)
        assert (row.n, row.unparsed) == (len(x), unparsed) and unparsed > 0
        assert row.metrics == agreement(x, y, bands=bands, n_boot=200)  # same table, same bootstrap draws
    for row in report.breakdowns["task"]:
        critic = next(c for c in world["critics"] if c.pk == row.critic_run)
        x, y, unparsed = _raw_pairs(critic, human=human, task=row.key)
        assert (row.n, row.unparsed) == (len(x), unparsed)
        assert row.metrics == agreement(x, y, bands=bands, n_boot=200)
    for row in report.breakdowns["model"]:
        critic = next(c for c in world["critics"] if c.pk == row.critic_run)
        x, y, _ = _raw_pairs(critic, human=human, run=next(r for r in world["runs"] if str(r.pk) == row.key))
        assert row.metrics["kendall"] == agreement(x, y, bands=bands, n_boot=200)["kendall"]
    categories = {row.key for row in report.breakdowns["category"]}
    assert categories == {"Perception & Understanding", "Reasoning & Analysis", "Dialogue Context"}


def test_it_sums_categories_from_their_tasks(world):
    report = analysis.agreement_report(critic_runs=world["critics"][:1], n_boot=0, with_humans=False)
    by_task = {row.key: row for row in report.breakdowns["task"]}
    perception = next(row for row in report.breakdowns["category"] if row.key == "Perception & Understanding")
    assert perception.n == sum(by_task[t].n for t in ("Description", "Counting", "OCR"))
    assert perception.unparsed == sum(by_task[t].unparsed for t in ("Description", "Counting", "OCR"))


def test_it_computes_human_agreement_like_the_rating_matrix(world):
    humans = analysis.human_agreement(inference_run_ids=[r.pk for r in world["runs"]], n_boot=100)
    annotators = world["annotators"]
    responses = world["responses"]
    matrix = np.full((len(annotators), len(responses)), np.nan)
    for h in HumanScore.objects.all():
        matrix[[a.pk for a in annotators].index(h.annotator_id), [r.pk for r in responses].index(h.response_id)] = h.score
    assert humans.alpha == pytest.approx(krippendorff_alpha_interval(matrix), abs=1e-12)
    assert humans.units == int(((~np.isnan(matrix)).sum(axis=0) >= 2).sum())
    a, b = matrix[0], matrix[1]
    both = ~np.isnan(a) & ~np.isnan(b)
    pair = next(p for p in humans.pairs if {p["a"], p["b"]} == {"ann1", "ann2"})
    assert pair["n"] == both.sum()
    assert pair["metrics"] == agreement(a[both], b[both], n_boot=100)


def test_it_says_undefined_for_constant_human_scores(db):
    # units (5,5) x3 and (7,7): perfect agreement
    assert analysis.alpha_from_unit_stats([2, 2], [10, 14], [50, 98], [3, 1]) == pytest.approx(
        krippendorff_alpha_interval([[5, 5, 5, 7], [5, 5, 5, 7]]))
    assert analysis.alpha_from_unit_stats([2], [10], [50], [4]) is None  # every value 5
    assert analysis.alpha_from_unit_stats([], [], [], []) is None


def test_it_computes_the_alignment_score_by_hand(hand):
    board = analysis.leaderboard(dataset=hand["dataset"], critic_run=hand["critic_run"])
    [row] = board.rows
    # std: group 1 sqrt(2/3), group 2 0 -> mean sqrt(2/3)/2; Counting has one variant and is skipped.
    assert row.alignment_groups == 2
    assert row.mean_spread == pytest.approx(math.sqrt(2 / 3) / 2)
    assert row.alignment == pytest.approx(2 / math.sqrt(2 / 3))
    assert row.alignment == pytest.approx(alignment_score(["g1"] * 3 + ["g2"] * 2 + ["g3"], [6, 8, 7, 5, 5, 10]).value)
    var = analysis.leaderboard(dataset=hand["dataset"], critic_run=hand["critic_run"], spread="var").rows[0]
    assert var.alignment == pytest.approx(3.0)  # 1 / mean(2/3, 0)


def test_it_separates_micro_and_macro_means(hand):
    [row] = analysis.leaderboard(dataset=hand["dataset"], critic_run=hand["critic_run"]).rows
    assert row.tasks["Description"] == pytest.approx(6.2) and row.tasks["Counting"] == 10
    assert row.tasks["Recognition"] is None and row.task_counts["Recognition"] == 0
    assert row.micro == pytest.approx(41 / 6) and row.macro == pytest.approx(8.1)
    assert (row.micro, row.macro) == pytest.approx(micro_macro(["D"] * 5 + ["C"], [6, 8, 7, 5, 5, 10]))
    assert row.categories["Perception & Understanding"] == pytest.approx(8.1)
    assert row.categories["Reasoning & Analysis"] is None
    assert (row.n, row.unparsed) == (6, 1)


def test_it_ranks_from_human_scores_and_expected_scores(hand):
    [human] = analysis.leaderboard(dataset=hand["dataset"], source="human").rows
    # Human means: 6, 8, 7, 5, 5 (Description), 8 (Counting), 3.5 (Recognition)
    assert human.tasks["Description"] == pytest.approx(6.2) and human.tasks["Recognition"] == pytest.approx(3.5)
    assert (human.n, human.unparsed) == (7, 0)
    [expected] = analysis.leaderboard(dataset=hand["dataset"], critic_run=hand["critic_run"], score_field="expected").rows
    assert expected.tasks["Description"] == pytest.approx(5.7)
    assert expected.alignment == pytest.approx(2 / math.sqrt(2 / 3))  # shifting every score keeps the spread


def test_it_defaults_to_the_newest_critic_run(hand):
    assert analysis.leaderboard(dataset=hand["dataset"]).critic_run == hand["critic_run"]


def test_it_sorts_the_leaderboard_with_empty_values_last(world):
    board = analysis.leaderboard(dataset=world["dataset"], critic_run=world["critics"][0])
    rows = analysis.leaderboard_sort(board.rows, key="micro")
    assert rows[0].micro >= rows[1].micro
    by_name = analysis.leaderboard_sort(board.rows, key="model", descending=False)
    assert [r.model for r in by_name] == sorted(r.model for r in board.rows)
    assert analysis.leaderboard_sort(board.rows, key="Rec")[-1].tasks["Recognition"] is None


def test_it_sorts_disagreements_by_gap_and_filters(world):
    rows = list(analysis.disagreements(critic_run_ids=[world["critics"][0].pk]))
    gaps = [r.gap for r in rows]
    assert gaps == sorted(gaps, reverse=True)
    first = rows[0]
    humans = [h.score for h in HumanScore.objects.filter(response=first.response)]
    assert first.gap == pytest.approx(abs(first.score - sum(humans) / len(humans)))
    assert all(r.gap >= 2 for r in analysis.disagreements(min_gap=2))
    assert {r.response.question.task for r in analysis.disagreements(task="OCR")} == {"OCR"}
    ann = world["annotators"][0]
    scored = set(HumanScore.objects.filter(annotator=ann).values_list("response_id", flat=True))
    assert {r.response_id for r in analysis.disagreements(annotator_id=ann.pk)} <= scored


def test_it_exports_a_training_set_with_the_template_prompt(hand):
    import json

    from evaluation import critics

    template = critics.critic_template_default()
    lines = [json.loads(line) for line in analysis.training_set_lines(template=template, dataset=hand["dataset"])]
    assert len(lines) == 14  # 7 answers x 2 people
    first = lines[0]
    assert first["messages"][0]["role"] == "user" and first["messages"][1]["role"] == "assistant"
    assert json.loads(first["messages"][1]["content"]) == {"Rating": 6, "Reason": "好"}
    from evaluation.models import Response

    rewrite = Response.objects.get(question__group="00000000", question__variant=2)
    line = next(line for line in lines if line["meta"]["response_id"] == rewrite.pk)
    assert line["messages"][0]["content"] == critics.critic_prompt(template=template, response=rewrite)
    exact = list(analysis.training_set_lines(template=template, dataset=hand["dataset"], agreement="exact"))
    assert len(exact) == 2 * 4  # 6/6, 7/7, 5/5 and 8/8 agree exactly
    within = list(analysis.training_set_lines(template=template, dataset=hand["dataset"], agreement="within1"))
    assert len(within) == 2 * 5  # and 3/4
    one = list(analysis.training_set_lines(template=template, annotator_ids=[hand["people"][0].pk]))
    assert len(one) == 7 and all(json.loads(x)["meta"]["annotator"] == "p1" for x in one)
    assert list(analysis.training_set_lines(template=template, min_annotators=3)) == []


def test_it_matches_from_counts_with_from_pairs_on_float_means():
    # Means of 3 annotators (x.333...) must group identically in SQL and in numpy.
    x = [7, 7, 3, 9]
    y = [20 / 3, 20 / 3, 10 / 3, 9.0]
    assert agreement_from_table(PairTable.from_counts([7, 3, 9], [20 / 3, 10 / 3, 9.0], [2, 1, 1]), n_boot=50) == \
        agreement(x, y, n_boot=50)
