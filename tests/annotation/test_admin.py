"""The admin shows human scores and their history but can't rewrite them: an edit there would
leave no revision row. Changes go through HumanScore.revise (the annotator's edit)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import HumanScore, HumanScoreRevision
from tests.factories import make_scoring_dataset, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def human_score(db):
    _, responses = make_scoring_dataset(questions=1, models=1, tasks=("Description",))
    anna = make_user(username="anna", role="annotator")
    human_score = HumanScore.objects.create(response=responses[0], annotator=anna, score=4, rationale="first look")
    human_score.revise(score=6, rationale="second look", flags=[], by=anna)
    return human_score


def test_it_shows_a_score_and_its_history_read_only(client, staff, human_score):
    client.force_login(staff)
    page = client.get(reverse("admin:annotation_humanscore_change", args=[human_score.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "second look" in html and "first look" in html
    assert 'name="score"' not in html and 'name="rationale"' not in html and 'name="flags"' not in html


def test_it_ignores_a_score_posted_to_the_admin(client, staff, human_score):
    client.force_login(staff)
    url = reverse("admin:annotation_humanscore_change", args=[human_score.pk])
    client.post(url, {"score": "1", "rationale": "rewritten in the admin", "flags": "[]", "time_spent_s": "0",
                      "response": human_score.response_id, "annotator": human_score.annotator_id,
                      "revisions-TOTAL_FORMS": "0", "revisions-INITIAL_FORMS": "0"})
    human_score.refresh_from_db()
    assert (human_score.score, human_score.rationale) == (6, "second look")
    assert list(HumanScoreRevision.objects.values_list("score", flat=True)) == [4]


def test_it_adds_no_scores_or_revisions_in_the_admin(client, staff, human_score):
    client.force_login(staff)
    assert client.get(reverse("admin:annotation_humanscore_add")).status_code == 403
    assert client.get(reverse("admin:annotation_humanscorerevision_add")).status_code == 403
    revision = HumanScoreRevision.objects.get()
    html = client.get(reverse("admin:annotation_humanscorerevision_change", args=[revision.pk])).content.decode()
    assert 'name="score"' not in html


def test_it_deletes_no_scores_in_the_admin(client, staff, human_score):
    client.force_login(staff)
    assert client.get(reverse("admin:annotation_humanscore_delete", args=[human_score.pk])).status_code == 403
    client.post(reverse("admin:annotation_humanscore_changelist"),
                {"action": "delete_selected", "_selected_action": [human_score.pk], "post": "yes"})
    assert HumanScore.objects.filter(pk=human_score.pk).exists()
