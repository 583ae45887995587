import pytest
from django.urls import reverse

from tests.factories import make_critic_run, make_critic_score, make_scoring_dataset

URL = reverse("evaluation:pairwise_ratings")


@pytest.fixture
def critic_run(db):
    dataset, responses = make_scoring_dataset(name="pairs<b>", questions=3, models=3)
    runs = sorted({r.run_id for r in responses})
    run = make_critic_run(name="judge", runs=sorted({r.run for r in responses}, key=lambda r: r.pk))
    first = min(r.question_id for r in responses)
    for r in responses:
        # model 2 > model 1 > model 0, with one tie between 1 and 2 so no model is unbeaten
        score = 5 if (r.question_id == first and r.run_id == runs[2]) else 3 + 2 * runs.index(r.run_id)
        make_critic_score(critic_run=run, response=r, score=score)
    return run


def test_it_shows_ratings_with_intervals_and_a_heat_map(client, researcher, critic_run):
    client.force_login(researcher)
    dataset = critic_run.inference_runs.first().dataset
    response = client.get(URL, {"dataset": dataset.pk, "source": f"critic-run:{critic_run.pk}"})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('data-testid="ratings-row"') == 3
    table = html.split('data-testid="ratings"')[1]
    assert table.index("pairs&lt;b&gt;-model-2") < table.index("pairs&lt;b&gt;-model-0")
    assert "<svg" in html and "Win rate" in html and "pairs<b>" not in html
    assert f'value="critic-run:{critic_run.pk}" selected' in html


def test_it_explains_when_there_is_nothing_to_rate(client, researcher, critic_run):
    client.force_login(researcher)
    response = client.get(URL, {"source": "human-scores"})
    assert 'data-testid="ratings-error"' in response.content.decode()
    assert "two or more inference runs" in response.content.decode()
    response = client.get(URL, {"source": "critic-run:abc"})
    assert "unknown source" in response.content.decode()


def test_it_renders_the_partial_for_htmx(client, researcher, critic_run):
    client.force_login(researcher)
    response = client.get(URL, {"source": f"critic-run:{critic_run.pk}"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="ratings">') and "<h1>" not in html


def test_it_is_for_researchers_only(client, annotator, critic_run):
    client.force_login(annotator)
    assert client.get(URL).status_code == 403
    client.logout()
    assert client.get(URL).status_code in (302, 403)
