"""The analysis pages, exports and commands: GET, 403, htmx partials, bounded queries, escaping."""

import csv
import io
import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from annotation.models import HumanScore
from evaluation import analysis
from tests.evaluation.analysis_data import hand_world, random_world


@pytest.fixture(autouse=True)
def _empty_cache():
    from django.core.cache import cache

    cache.clear()  # reports are cached by data fingerprint; each test starts cold


@pytest.fixture
def world(db):
    return random_world()


@pytest.fixture
def hand(db):
    return hand_world()


def _agreement_url(world, **params):
    from urllib.parse import urlencode

    query = [("critic_run", c.pk) for c in world["critics"]] + list(params.items())
    return reverse("evaluation:analysis_agreement") + "?" + urlencode(query)


PAGES = [
    ("evaluation:analysis_agreement", {}), ("evaluation:leaderboard", {}),
    ("evaluation:disagreements", {}), ("evaluation:disagreements_export", {}),
    ("evaluation:training_set", {}), ("evaluation:training_set_export", {}),
    ("evaluation:leaderboard_export", {"fmt": "csv"}), ("evaluation:leaderboard_export", {"fmt": "md"}),
]


@pytest.mark.parametrize("name,kwargs", PAGES)
def test_it_keeps_analysis_to_researchers(client, hand, annotator, researcher, name, kwargs):
    url = reverse(name, kwargs=kwargs)
    client.force_login(annotator)
    assert client.get(url).status_code == 403
    assert client.get(url, headers={"HX-Request": "true"}).status_code == 403
    client.force_login(researcher)
    assert client.get(url).status_code == 200


def test_it_keeps_the_side_by_side_view_to_researchers(client, hand, annotator, researcher):
    score = hand["critic_run"].scores.first()
    url = reverse("evaluation:disagreement", args=[score.pk])
    client.force_login(annotator)
    assert client.get(url).status_code == 403
    client.force_login(researcher)
    assert client.get(url).status_code == 200


def test_it_shows_critics_side_by_side_with_intervals_and_unparsed(client, world, researcher,
                                                                   django_assert_max_num_queries):
    client.force_login(researcher)
    with django_assert_max_num_queries(15):
        response = client.get(_agreement_url(world, by="task"))
    html = response.content.decode()
    assert response.status_code == 200
    report = analysis.agreement_report(critic_runs=world["critics"], breakdowns=["task"])
    for row in report.overall:
        assert row.metrics["mae"].display() in html and row.metrics["kendall"].display() in html
        assert f'data-testid="unparsed">{row.unparsed}<' in html and row.unparsed > 0
    assert "评委 judge-a" in html and "评委 judge-b" in html
    assert "描述类 Description (Des)" in html and "nan" not in html.lower()
    assert "<svg" in html and "人工评分 Human score" in html
    assert "Krippendorff" not in html and 'data-testid="load-humans"' in html  # loaded after the page


def test_it_loads_human_agreement_as_a_partial_and_without_js(client, world, researcher):
    client.force_login(researcher)
    partial = client.get(_agreement_url(world, humans="1"), headers={"HX-Request": "true"}).content.decode()
    humans = analysis.human_agreement(inference_run_ids=[r.pk for r in world["runs"]])
    assert 'id="humans"' in partial and "<html" not in partial and "Krippendorff" in partial
    assert f"{humans.alpha:.3f}" in partial and "ann1 · ann2" in partial
    assert humans.pooled["mae"].display() in partial
    page = client.get(_agreement_url(world, humans="1")).content.decode()
    assert "Krippendorff" in page and "<html" in page


def test_it_renders_each_breakdown_and_htmx_partials(client, world, researcher):
    client.force_login(researcher)
    for by, label in [("category", "感知与理解 Perception"), ("model", "模型甲 Qwen-VL")]:
        html = client.get(_agreement_url(world, by=by)).content.decode()
        assert label in html
    partial = client.get(_agreement_url(world, by="task", human="each"), headers={"HX-Request": "true"})
    text = partial.content.decode()
    assert 'id="report"' in text and "<html" not in text and "each annotator" in text


def test_it_shows_undefined_never_nan(client, hand, researcher):
    # Every critic score in Counting is 10 and the only Counting human mean is 8: correlations are undefined.
    client.force_login(researcher)
    url = reverse("evaluation:analysis_agreement")
    html = client.get(url, {"critic_run": hand["critic_run"].pk, "by": "task"}).content.decode()
    assert "undefined" in html and "nan" not in html.lower()
    counting = [r for r in analysis.agreement_report(critic_runs=[hand["critic_run"]]).breakdowns["task"]
                if r.key == "Counting"][0]
    assert counting.metrics["pearson"].value is None and counting.metrics["pearson"].display() == "undefined"


def test_it_rejects_bad_bands_and_says_why(client, world, researcher):
    client.force_login(researcher)
    response = client.get(_agreement_url(world, bands="1-3,5-10"))
    assert response.status_code == 400 and "gap in bands" in response.content.decode()


def test_it_asks_for_a_critic_run_first(client, db, researcher):
    client.force_login(researcher)
    html = client.get(reverse("evaluation:analysis_agreement")).content.decode()
    assert "Pick one or more critic runs" in html


def test_it_shows_the_leaderboard_with_abbreviations_alignment_and_unparsed(client, hand, researcher,
                                                                            django_assert_max_num_queries):
    client.force_login(researcher)
    with django_assert_max_num_queries(10):
        response = client.get(reverse("evaluation:leaderboard"), {"dataset": hand["dataset"].pk})
    html = response.content.decode()
    for abbr in "Des Rec Cou OCR Mem Kno Rea Cha Pro Com Wri Coh Inc".split():
        assert f">{abbr}<" in html
    assert 'data-testid="alignment">2.45<' in html  # 2 / sqrt(2/3)
    assert 'data-testid="unparsed">1<' in html
    assert ">6.83<" in html and ">8.10<" in html  # micro 41/6, macro (6.2 + 10) / 2
    var = client.get(reverse("evaluation:leaderboard"), {"dataset": hand["dataset"].pk, "spread": "var"})
    assert 'data-testid="alignment">3.00<' in var.content.decode()
    partial = client.get(reverse("evaluation:leaderboard"), {"dataset": hand["dataset"].pk, "sort": "Des", "dir": "asc"},
                         headers={"HX-Request": "true"})
    assert 'id="board"' in partial.content.decode() and "<html" not in partial.content.decode()


def test_it_sorts_the_leaderboard_by_a_column(client, world, researcher):
    client.force_login(researcher)
    url = reverse("evaluation:leaderboard")
    params = {"dataset": world["dataset"].pk, "critic_run": world["critics"][0].pk, "sort": "model"}
    up = client.get(url, {**params, "dir": "asc"}).content.decode()
    down = client.get(url, {**params, "dir": "desc"}).content.decode()
    assert up.index("模型乙 GLM-4V") < up.index("模型甲 Qwen-VL")
    assert down.index("模型甲 Qwen-VL") < down.index("模型乙 GLM-4V")


def test_it_exports_the_leaderboard_as_csv_and_markdown(client, hand, researcher):
    client.force_login(researcher)
    params = {"dataset": hand["dataset"].pk}
    response = client.get(reverse("evaluation:leaderboard_export", args=["csv"]), params)
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert response["Content-Type"].startswith("text/csv")
    assert rows[0][:4] == ["Model", "Des", "Rec", "Cou"] and rows[1][0] == "模型 M"
    header = rows[0]
    assert rows[1][header.index("Micro")] == "6.83" and rows[1][header.index("Unparsed")] == "1"
    md = client.get(reverse("evaluation:leaderboard_export", args=["md"]), params).content.decode()
    assert md.startswith("| Model | Des |") and "| 模型 M |" in md
    assert client.get(reverse("evaluation:leaderboard_export", args=["xls"]), params).status_code == 404


def test_it_ranks_by_human_scores_on_the_page(client, hand, researcher):
    client.force_login(researcher)
    html = client.get(reverse("evaluation:leaderboard"), {"dataset": hand["dataset"].pk, "source": "human"}).content
    assert ">3.50<" in html.decode()  # Recognition from the humans, which the critic could not parse


def test_it_lists_disagreements_biggest_gap_first(client, world, researcher, django_assert_max_num_queries):
    client.force_login(researcher)
    with django_assert_max_num_queries(12):
        response = client.get(reverse("evaluation:disagreements"))
    html = response.content.decode()
    assert html.count('data-testid="disagreement-row"') == 25
    top = analysis.disagreements().first()
    assert reverse("evaluation:disagreement", args=[top.pk]) in html
    partial = client.get(reverse("evaluation:disagreements"), {"task": "OCR", "min_gap": "1"},
                         headers={"HX-Request": "true"})
    text = partial.content.decode()
    assert 'id="rows"' in text and "<html" not in text
    assert "Description" not in text.split('id="rows"')[1]


def test_it_opens_the_side_by_side_view_escaped(client, hand, researcher):
    score = hand["critic_run"].scores.select_related("response").first()
    score.critique = "<script>alert(1)</script>"
    score.save()
    HumanScore.objects.filter(response=score.response).update(rationale="<b>人工</b>")
    client.force_login(researcher)
    url = reverse("evaluation:disagreement", args=[score.pk])
    html = client.get(url).content.decode()
    assert "&lt;script&gt;" in html and "<script>alert" not in html and "&lt;b&gt;人工&lt;/b&gt;" in html
    assert html.count('data-testid="human-score"') == 2 and "参考答案 Reference" in html
    partial = client.get(url, headers={"HX-Request": "true"}).content.decode()
    assert "<html" not in partial and 'data-testid="disagreement-detail"' in partial


def test_it_exports_the_filtered_disagreements_as_csv(client, world, researcher):
    client.force_login(researcher)
    response = client.get(reverse("evaluation:disagreements_export"), {"task": "OCR", "min_gap": "1"})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0] == analysis.DISAGREEMENT_CSV_HEADER
    assert len(rows) - 1 == analysis.disagreements(task="OCR", min_gap=1).count() > 0
    assert {r[2] for r in rows[1:]} == {"OCR"} and all(float(r[8]) >= 1 for r in rows[1:])


def test_it_exports_the_training_set(client, hand, researcher):
    client.force_login(researcher)
    html = client.get(reverse("evaluation:training_set")).content.decode()
    assert "p1" in html and "alignbench-default" in html
    response = client.get(reverse("evaluation:training_set_export"),
                          {"dataset": hand["dataset"].pk, "agreement": "exact", "annotator": hand["people"][1].pk})
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(lines) == 4 and {line["meta"]["annotator"] for line in lines} == {"p2"}
    assert {json.loads(line["messages"][1]["content"])["Rating"] for line in lines} == {6, 7, 5, 8}


def test_it_prints_agreement_json(hand, world, capsys):
    call_command("agreement", "--critic-run", str(world["critics"][0].pk), "--critic-run",
                 str(world["critics"][1].pk), "--json")
    data = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in data["critic_runs"]] == [c.pk for c in world["critics"]]
    overall = data["overall"][0]
    report = analysis.agreement_report(critic_runs=world["critics"])
    assert overall["n"] == report.overall[0].n and overall["unparsed"] == report.overall[0].unparsed > 0
    assert overall["mae"]["value"] == pytest.approx(report.overall[0].metrics["mae"].value)
    assert {row["key"] for row in data["breakdowns"]["task"]} >= {"Description", "OCR"}
    assert data["humans"]["krippendorff_alpha_interval"] == pytest.approx(report.humans.alpha)


def test_it_prints_undefined_as_null_in_json(hand, capsys):
    call_command("agreement", "--critic-run", str(hand["critic_run"].pk), "--json")
    text = capsys.readouterr().out
    assert "NaN" not in text
    counting = next(r for r in json.loads(text)["breakdowns"]["task"] if r["key"] == "Counting")
    assert counting["pearson"] == {"value": None, "low": None, "high": None}


def test_it_prints_leaderboard_json(hand, capsys):
    call_command("leaderboard", "--dataset", "手算 hand", "--json")
    data = json.loads(capsys.readouterr().out)
    [row] = data["rows"]
    assert data["source"] == "critic" and data["critic_run"] == hand["critic_run"].pk
    assert row["tasks"]["Des"] == pytest.approx(6.2) and row["tasks"]["Rec"] is None
    assert row["micro"] == pytest.approx(41 / 6) and row["macro"] == pytest.approx(8.1)
    assert row["alignment"] == pytest.approx(2.449489742783178) and row["unparsed"] == 1
    call_command("leaderboard", "--dataset", "手算 hand", "--source", "human", "--json")
    human = json.loads(capsys.readouterr().out)
    assert human["rows"][0]["tasks"]["Rec"] == pytest.approx(3.5)


def test_it_refuses_unknown_ids_in_commands(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("agreement", "--critic-run", "999")
    with pytest.raises(CommandError):
        call_command("leaderboard", "--dataset", "nope")


def test_it_counts_an_unparsed_critic_score_on_the_agreement_page(client, hand, researcher):
    client.force_login(researcher)
    html = client.get(reverse("evaluation:analysis_agreement"), {"critic_run": hand["critic_run"].pk}).content.decode()
    assert 'data-testid="unparsed">1<' in html  # the Recognition answer the critic could not score


def test_it_recomputes_a_cached_report_when_a_score_changes(client, hand, researcher, django_assert_max_num_queries):
    client.force_login(researcher)
    url = reverse("evaluation:analysis_agreement")
    params = {"critic_run": hand["critic_run"].pk}
    def report_html(response) -> str:
        return response.content.decode().split('id="report"')[1]

    first = report_html(client.get(url, params))
    with django_assert_max_num_queries(8):  # served from the cache: session, user, runs and the fingerprint
        assert report_html(client.get(url, params)) == first
    score = HumanScore.objects.filter(response__question__task="Description").first()
    score.revise(score=10, rationale="改了", flags=[], by=researcher)
    report = analysis.agreement_report(critic_runs=[hand["critic_run"]], breakdowns=["task"], with_humans=False)
    again = report_html(client.get(url, params))
    assert again != first and report.overall[0].metrics["mae"].display() in again
    from evaluation.models import CriticScore

    CriticScore.objects.filter(score__isnull=True).update(score=3, parse_status="parsed")
    assert 'data-testid="unparsed">0<' in client.get(url, params).content.decode()
