"""Each database constraint rejects what it should: the database, not hope, keeps the data sane."""

import pytest
from django.db import IntegrityError, transaction

from annotation.models import Adjudication, HumanScore, HumanScoreRevision, Question
from tests.factories import make_dataset, make_endpoint, make_image, make_question, make_response, make_run


@pytest.fixture
def response(db, annotator):
    dataset = make_dataset()
    question = make_question(dataset=dataset)
    run = make_run(endpoint=make_endpoint(), dataset=dataset)
    return make_response(run=run, question=question)


def _rejects(**fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        Question.objects.create(**fields)


def test_it_rejects_a_second_question_with_the_same_group_and_variant(db):
    dataset = make_dataset()
    question = make_question(dataset=dataset, group="00000001", variant=0)
    _rejects(dataset=dataset, image=question.image, task="Description", group="00000001", variant=0, text="again")


def test_it_allows_the_same_group_and_variant_in_another_dataset(db):
    question = make_question(dataset=make_dataset(name="a"), group="00000001")
    make_question(dataset=make_dataset(name="b"), image=question.image, group="00000001")
    assert Question.objects.count() == 2


def test_it_allows_many_unnumbered_proposals_in_one_group(db):
    seed = make_question(dataset=make_dataset())
    for text in ("一", "二"):
        Question.objects.create(dataset=seed.dataset, image=seed.image, task=seed.task, group=seed.group,
                                variant=None, text=text, status="proposed", origin="llm")
    assert Question.objects.proposed().count() == 2


def test_it_rejects_an_unknown_task(db):
    _rejects(dataset=make_dataset(), image=make_image(), task="Poetry", group="g", variant=0, text="x")


def test_it_rejects_empty_question_text(db):
    _rejects(dataset=make_dataset(), image=make_image(), task="OCR", group="g", variant=0, text="")


def test_it_rejects_an_accepted_question_without_a_variant(db):
    _rejects(dataset=make_dataset(), image=make_image(), task="OCR", group="g", variant=None, text="x",
             status="accepted")


def test_it_rejects_a_reference_answer_on_a_rewrite(db):
    _rejects(dataset=make_dataset(), image=make_image(), task="OCR", group="g", variant=1, text="x", reference="ref")


def test_it_rejects_human_scores_outside_1_to_10(response, annotator):
    for bad in (0, 11):
        with pytest.raises(IntegrityError), transaction.atomic():
            HumanScore.objects.create(response=response, annotator=annotator, score=bad)


def test_it_rejects_a_second_score_by_the_same_annotator(response, annotator):
    HumanScore.objects.create(response=response, annotator=annotator, score=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        HumanScore.objects.create(response=response, annotator=annotator, score=6)


def test_it_rejects_revisions_outside_1_to_10(response, annotator):
    score = HumanScore.objects.create(response=response, annotator=annotator, score=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        HumanScoreRevision.objects.create(human_score=score, score=12, changed_by=annotator)


def test_it_rejects_adjudicated_scores_outside_1_to_10(response, researcher):
    with pytest.raises(IntegrityError), transaction.atomic():
        Adjudication.objects.create(response=response, score=0, note="x", resolved_by=researcher)
    Adjudication.objects.create(response=response, score=None, note="reference is wrong", resolved_by=researcher)


def test_it_keeps_the_old_value_when_a_score_is_revised(response, annotator):
    score = HumanScore.objects.create(response=response, annotator=annotator, score=5, rationale="ok")
    revision = score.revise(score=8, rationale="better on second look", flags=[], by=annotator)
    score.refresh_from_db()
    assert score.score == 8
    assert (revision.score, revision.rationale, revision.changed_by) == (5, "ok", annotator)
    assert score.revise(score=8, rationale="better on second look", flags=[], by=annotator) is None


def test_it_gives_accepted_rewrites_the_next_free_variant(db, curator):
    seed = make_question(dataset=make_dataset())
    proposals = [Question.objects.create(dataset=seed.dataset, image=seed.image, task=seed.task, group=seed.group,
                                         text=t, status="proposed", origin="llm") for t in ("甲", "乙")]
    proposals[1].accept_rewrite(by=curator)
    proposals[0].accept_rewrite(by=curator, text="  甲（改）  ")
    assert (proposals[1].variant, proposals[0].variant, proposals[0].text) == (1, 2, "甲（改）")
    assert proposals[0].reference_answer == seed.reference


def test_it_refuses_to_change_a_frozen_dataset(db, curator):
    seed = make_question(dataset=make_dataset())
    proposal = Question.objects.create(dataset=seed.dataset, image=seed.image, task=seed.task, group=seed.group,
                                       text="x", status="proposed", origin="llm")
    seed.dataset.freeze()
    with pytest.raises(Exception, match="frozen"):
        proposal.accept_rewrite(by=curator)
