"""Rewrites of dialogue questions keep no history of their own (like their reference answer, it lives
on the seed): models, critics and the training set must still see it."""

import json

import pytest

from annotation.models import Question
from evaluation import critics
from evaluation.analysis import training_set_lines
from evaluation.critics import critic_prompt
from evaluation.inference import conversation_for
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run

pytestmark = pytest.mark.django_db

HISTORY = [{"user": "图里有几个出口？", "assistant": "两个：A口和B口。"}]


@pytest.fixture
def rewrite():
    dataset = make_dataset()
    make_question(dataset=dataset, task="Coherence", group="00110000", text="我该从哪个出口出去？",
                  reference="A口。", history=HISTORY)
    return make_question(dataset=dataset, task="Coherence", group="00110000", variant=1, text="那我应该从哪个出口出去？")


def test_a_rewrite_is_asked_after_its_seeds_dialogue(rewrite, django_assert_num_queries):
    assert rewrite.history == []
    questions = list(Question.objects.filter(pk=rewrite.pk))
    Question.attach_seeds(questions)
    with django_assert_num_queries(0):
        messages = conversation_for(questions[0], image_path="/img.png")
    assert [(m.role, m.text, m.images) for m in messages] == [
        ("user", "图里有几个出口？", ("/img.png",)), ("assistant", "两个：A口和B口。", ()),
        ("user", "那我应该从哪个出口出去？", ()),
    ]


def test_the_critic_sees_the_seeds_dialogue_and_reference(rewrite):
    response = make_response(run=make_run(endpoint=make_endpoint(), dataset=rewrite.dataset), question=rewrite)
    prompt = critic_prompt(template=critics.critic_template_default(), response=response)
    assert "两个：A口和B口。" in prompt and "A口。" in prompt and "那我应该从哪个出口出去？" in prompt


def test_the_training_set_line_of_a_rewrite_has_the_dialogue(rewrite, annotator):
    from annotation.models import HumanScore

    response = make_response(run=make_run(endpoint=make_endpoint(), dataset=rewrite.dataset), question=rewrite)
    HumanScore.objects.create(response=response, annotator=annotator, score=6, rationale="还行")
    lines = [json.loads(line) for line in training_set_lines(template=critics.critic_template_default(),
                                                              min_annotators=1)]
    assert len(lines) == 1 and "两个：A口和B口。" in lines[0]["messages"][0]["content"]


def test_a_proposed_rewrite_of_a_dialogue_question_can_be_accepted(rewrite, curator):
    proposal = Question.objects.create(dataset=rewrite.dataset, image=rewrite.image, task="Coherence", group="00110000",
                                       variant=None, text="走哪个口？", status=Question.Status.PROPOSED)
    proposal.accept_rewrite(by=curator)
    proposal.refresh_from_db()
    assert (proposal.status, proposal.variant, proposal.dialogue_history) == ("accepted", 2, HISTORY)


def test_a_dialogue_seed_still_needs_its_history():
    from django.core.exceptions import ValidationError

    dataset = make_dataset()
    seed = Question(dataset=dataset, task="Coherence", group="00110001", variant=0, text="问题")
    with pytest.raises(ValidationError, match="at least one earlier round"):
        seed.clean()


def test_the_response_page_shows_the_seeds_dialogue(client, researcher, rewrite):
    from django.urls import reverse

    response = make_response(run=make_run(endpoint=make_endpoint(), dataset=rewrite.dataset), question=rewrite)
    client.force_login(researcher)
    html = client.get(reverse("evaluation:response", args=[response.pk])).content.decode()
    assert "两个：A口和B口。" in html and "A口。" in html
