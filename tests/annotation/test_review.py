import pytest
from django.urls import reverse

from annotation.models import Question
from tests.factories import make_dataset, make_question


@pytest.fixture
def group(db):
    dataset = make_dataset()
    seed = make_question(dataset=dataset, group="00030000", task="Counting", text="图中有3只猫吗？", reference="有。")
    proposals = [Question.objects.create(dataset=dataset, image=seed.image, task=seed.task, group=seed.group,
                                         text=text, status="proposed", origin="llm", drift=drift)
                 for text, drift in [("图里有三只猫吗？", []), ("图中有<4>只猫吗？", [
                     {"kind": "number", "token": "3", "message": "数字 3 不见了 / number 3 is missing"}]),
                                     ("请问有3只猫吗？", [])]]
    return {"dataset": dataset, "seed": seed, "proposals": proposals}


def test_it_shows_the_seed_beside_its_proposals_with_drift_marked(client, curator, group):
    client.force_login(curator)
    html = client.get(reverse("annotation:rewrite_review", args=[group["dataset"].pk])).content.decode()
    assert "图中有<mark>3</mark>只猫吗？" in html and "有。" in html
    assert "图中有&lt;4&gt;只猫吗？" in html and "number 3 is missing" in html

    assert 'data-testid="shortcuts"' in html


def test_it_accepts_with_the_next_variant_and_returns_the_row_for_htmx(client, curator, group):
    client.force_login(curator)
    first, _, third = group["proposals"]
    response = client.post(reverse("annotation:rewrite_accept", args=[third.pk]), headers={"HX-Request": "true"})
    assert response.status_code == 200 and "variant 1" in response.content.decode()
    client.post(reverse("annotation:rewrite_accept", args=[first.pk]), {"text": "图里是不是有三只猫？"})
    first.refresh_from_db()
    third.refresh_from_db()
    assert (third.variant, first.variant, first.text, first.status) == (1, 2, "图里是不是有三只猫？", "accepted")


def test_it_rejects_and_keeps_the_record(client, curator, group):
    client.force_login(curator)
    flagged = group["proposals"][1]
    client.post(reverse("annotation:rewrite_reject", args=[flagged.pk]))
    flagged.refresh_from_db()
    assert (flagged.status, flagged.variant) == ("rejected", None)
    assert client.post(reverse("annotation:rewrite_accept", args=[flagged.pk])).status_code == 404


def test_it_bulk_accepts_only_unflagged_proposals(client, curator, group):
    client.force_login(curator)
    client.post(reverse("annotation:rewrite_accept_unflagged", args=[group["seed"].pk]))
    statuses = {q.text: q.status for q in Question.objects.filter(group="00030000", variant__isnull=False)}
    assert statuses == {"图中有3只猫吗？": "accepted", "图里有三只猫吗？": "accepted", "请问有3只猫吗？": "accepted"}
    assert Question.objects.get(text="图中有<4>只猫吗？").status == "proposed"


def test_it_refuses_changes_to_a_frozen_dataset(client, curator, group):
    group["dataset"].freeze()
    client.force_login(curator)
    response = client.post(reverse("annotation:rewrite_accept", args=[group["proposals"][0].pk]))
    assert response.status_code == 409 and "frozen" in response.content.decode()


def test_it_keeps_review_to_curators(client, annotator, researcher, group):
    for user in (annotator, researcher):
        client.force_login(user)
        assert client.get(reverse("annotation:rewrite_review", args=[group["dataset"].pk])).status_code == 403
        assert client.post(reverse("annotation:rewrite_accept", args=[group["proposals"][0].pk])).status_code == 403


def test_it_says_when_nothing_waits(client, curator, db):
    client.force_login(curator)
    html = client.get(reverse("annotation:rewrite_review", args=[make_dataset().pk])).content.decode()
    assert 'data-testid="nothing-to-review"' in html
