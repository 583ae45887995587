"""Blindness: an annotator with a pending item can't get a critic score, a critique or anyone
else's score out of any URL of the app, whole page or htmx partial, whatever ids they try."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from annotation import scoring
from annotation.models import Adjudication, Assignment, HumanScore
from tests.factories import make_critic_run, make_critic_score, make_scoring_dataset, make_user

pytestmark = pytest.mark.django_db

CRITIQUE = "CRITIQUE-MARKER-q7Zx"
RAW = "RAW-OUTPUT-MARKER-k2Vb"
PEER = "PEER-RATIONALE-MARKER-w4Jn"
NOTE = "ADJUDICATION-MARKER-p8Lm"
# Numbers no page would print by accident: the critic's expected score and spread, a peer's time.
NUMBERS = ("8.76", "8.8", "1.23", "4321")
MARKERS = (CRITIQUE, RAW, PEER, NOTE, *NUMBERS, 'data-testid="critic-row"', 'data-testid="peer-row"', "big-gap")
SKIP_POST = ("logout", "score_submit", "score_edit")


def _routes(resolver=None, prefix: str = ""):
    """Every URL pattern of the project, nested includes (admin too) flattened."""
    for entry in (resolver or get_resolver()).url_patterns:
        if isinstance(entry, URLResolver):
            yield from _routes(entry, prefix + _route_text(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + _route_text(entry.pattern), entry.name or ""


def _route_text(pattern) -> str:
    text = str(pattern)
    if hasattr(pattern, "_route"):
        return text
    # A regex pattern (admin's app index): take the first alternative of each named group.
    text = text.lstrip("^").rstrip("$").replace("\\Z", "")
    return re.sub(r"\(\?P<(\w+)>([^)]*)\)", lambda m: m.group(2).split("|")[0] if "|" in m.group(2) else "<x>", text)


def _fill(route: str, ids: list[int]) -> list[str]:
    """The route with every parameter set to each interesting id (same id for all params)."""
    if "<" not in route:
        return ["/" + route]
    return ["/" + re.sub(r"<(?:\w+:)?\w+>", str(i), route) for i in ids]


@pytest.fixture
def world(db, annotator):
    dataset, responses = make_scoring_dataset(questions=2, models=1, tasks=("Description",), show_peer_scores=True,
                                              annotators_per_response=3)
    critic = make_critic_run(name="judge")
    bob = make_user(username="bob", role="annotator")
    scores = []
    for r in responses:
        make_critic_score(critic_run=critic, response=r, score=9, critique=CRITIQUE, raw_output=RAW,
                          expected_score=8.76, expected_spread=1.23)
        scores.append(HumanScore.objects.create(response=r, annotator=bob, score=2, rationale=PEER, time_spent_s=4321))
    Adjudication.objects.create(response=responses[0], note=NOTE, score=5, resolved_by=bob)
    scoring.queue_sync(dataset)
    pending = scoring.assignment_reserve_next(user=annotator, dataset=dataset)
    assert pending is not None
    ids = sorted({1, dataset.pk, pending.pk, pending.response_id, critic.pk, bob.pk,
                  *(r.pk for r in responses), *(s.pk for s in scores),
                  *Assignment.objects.values_list("pk", flat=True), responses[0].question.image_id})
    return {"pending": pending, "ids": ids}


def _body(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode("utf-8", "ignore")
    return response.content.decode("utf-8", "ignore")


def test_it_reveals_no_critic_or_peer_score_before_submitting(client, annotator, world):
    client.force_login(annotator)
    urls = [(url, name) for route, name in _routes() for url in _fill(route, world["ids"])]
    assert any("score/item" in url for url, _ in urls) and any("adjudication" in url for url, _ in urls)
    assert any(name == "dataset_scoring" for _, name in urls)
    checked = 0
    for url, name in urls:
        for method in ("get", "post"):
            if method == "post" and name in SKIP_POST:
                continue
            for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
                response = getattr(client, method)(url, **headers)
                body = _body(response)
                leaked = [m for m in MARKERS if m in body]
                assert not leaked, f"{method.upper()} {url} {headers} -> {response.status_code} shows {leaked}"
                checked += 1
    assert checked > 200
    # The check ran while anna's item was still pending and unscored.
    pending = Assignment.objects.get(pk=world["pending"].pk)
    assert not HumanScore.objects.filter(annotator=annotator).exists()
    assert pending.status in {Assignment.Status.RESERVED, Assignment.Status.SKIPPED}


def test_it_does_reveal_them_right_after_submitting(client, annotator, world):
    """The same markers do show once she has scored: proof the test above looks for the right thing."""
    client.force_login(annotator)
    pending = world["pending"]
    client.post(f"/score/item/{pending.pk}/submit", {"score": "8"})
    body = client.get(f"/score/done/{pending.response_id}/").content.decode()
    assert CRITIQUE in body and PEER in body and "big-gap" in body
