"""The image page and the question editor: add, edit, dialogue rounds, validation, rewrites."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import Image, Question
from tests.factories import make_dataset, make_image, make_question


@pytest.fixture
def image(db):
    return make_image(seed=11)


@pytest.fixture
def dataset(db):
    return make_dataset(name="草稿 draft")


def _new(client, image, **data):
    return client.post(reverse("annotation:question_new", args=[image.pk]), data)


def test_the_image_page_shows_the_image_metadata_and_grouped_questions(client, curator, image, dataset):
    seed = make_question(dataset=dataset, image=image, group="00000007", text="描述图片。")
    make_question(dataset=dataset, image=image, group="00000007", variant=1, text="请描述<b>这张</b>图。")
    client.force_login(curator)
    response = client.get(reverse("annotation:image", args=[image.pk]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "data-viewer" in html and image.sha256 in html and "00000007-0" in html
    assert "请描述&lt;b&gt;这张&lt;/b&gt;图。" in html
    (group_seed, rewrites), = response.context["groups"]
    assert group_seed == seed and [r.variant for r in rewrites] == [1]
    assert 'name="history-0-user"' in html and "梗图理解 Meme" in html


def test_it_edits_tags_source_and_licence_with_htmx(client, curator, image):
    client.force_login(curator)
    response = client.post(reverse("annotation:image_edit", args=[image.pk]),
                           {"tags": "Meme, 图表  ocr", "source": "微博", "licence": "CC BY"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200 and response.content.decode().lstrip().startswith('<section class="card" id="meta">')
    image.refresh_from_db()
    assert sorted(image.tags.values_list("name", flat=True)) == ["meme", "ocr", "图表"]
    assert (image.source, image.licence) == ("微博", "CC BY")


def test_it_adds_a_dialogue_question_with_two_rounds(client, curator, image, dataset):
    client.force_login(curator)
    response = _new(client, image, dataset=dataset.pk, task="Coherence", text="那第三个呢？", reference="第三个是猫。",
                    **{"history-0-user": "图里有什么？", "history-0-assistant": "有一只狗。",
                       "history-1-user": "第二个呢？", "history-1-assistant": "一只鸟。",
                       "history-2-user": "", "history-2-assistant": ""})
    question = Question.objects.get()
    assert response.status_code == 302 and response.url == reverse("annotation:question", args=[question.pk])
    assert question.history == [{"user": "图里有什么？", "assistant": "有一只狗。"},
                                {"user": "第二个呢？", "assistant": "一只鸟。"}]
    assert (question.group, question.variant, question.origin) == ("00110000", 0, "human")
    assert question.created_by == curator


@pytest.mark.parametrize("data,message", [
    ({"task": "Coherence", "text": "还有呢？"}, "Dialogue tasks need at least one earlier round"),
    ({"task": "OCR", "text": "写了什么？", "history-0-user": "嗨", "history-0-assistant": "你好"},
     "Only the dialogue tasks (Coherence, Incoherence) have a dialogue history."),
    ({"task": "OCR", "text": "   "}, "The question text can&#x27;t be empty."),
    ({"task": "Coherence", "text": "嗯", "history-0-user": "只有用户 only the user"},
     "Each dialogue round needs a non-empty user turn and a non-empty assistant turn."),
])
def test_it_explains_what_is_wrong_with_a_question(client, curator, image, dataset, data, message):
    client.force_login(curator)
    response = _new(client, image, dataset=dataset.pk, **data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not Question.objects.exists()


def test_it_refuses_a_new_question_in_a_frozen_dataset(client, curator, image):
    frozen = make_dataset(name="frozen", frozen=True)
    client.force_login(curator)
    response = _new(client, image, dataset=frozen.pk, task="OCR", text="写了什么？")
    assert response.status_code == 400 and not Question.objects.exists()


def test_it_edits_a_seed_and_lists_its_rewrites(client, curator, image, dataset):
    seed = make_question(dataset=dataset, image=image, task="OCR", group="00100000", text="写了什么？", reference="你好")
    make_question(dataset=dataset, image=image, task="OCR", group="00100000", variant=1, text="上面写着什么？")
    client.force_login(curator)
    page = client.get(reverse("annotation:question", args=[seed.pk]))
    assert "上面写着什么？" in page.content.decode() and len(page.context["rewrites"]) == 1
    response = client.post(reverse("annotation:question_edit", args=[seed.pk]),
                           {"task": "OCR", "text": "图上写了什么字？", "reference": "你好世界"})
    assert response.status_code == 302
    seed.refresh_from_db()
    assert (seed.text, seed.reference) == ("图上写了什么字？", "你好世界")


def test_a_rewrite_keeps_its_seeds_task_and_reference(client, curator, image, dataset):
    make_question(dataset=dataset, image=image, task="OCR", group="00100000", reference="你好")
    rewrite = make_question(dataset=dataset, image=image, task="OCR", group="00100000", variant=1, text="旧")
    client.force_login(curator)
    client.post(reverse("annotation:question_edit", args=[rewrite.pk]),
                {"task": "Meme", "text": "新的说法", "reference": "改不了"})
    rewrite.refresh_from_db()
    assert (rewrite.task, rewrite.text, rewrite.reference, rewrite.reference_answer) == ("OCR", "新的说法", "", "你好")


def test_a_seed_without_rewrites_moves_to_a_group_of_its_new_task(client, curator, image, dataset):
    seed = make_question(dataset=dataset, image=image, task="OCR", group="00100000")
    client.force_login(curator)
    client.post(reverse("annotation:question_edit", args=[seed.pk]), {"task": "Meme", "text": "解释这个梗"})
    seed.refresh_from_db()
    assert (seed.task, seed.group) == ("Meme", "00080000")


def test_it_refuses_to_edit_a_question_of_a_frozen_dataset(client, curator, image):
    question = make_question(dataset=make_dataset(name="v1", frozen=True), image=image, text="原文")
    client.force_login(curator)
    page = client.get(reverse("annotation:question", args=[question.pk])).content.decode()
    assert "is frozen" in page and "<fieldset class=\"plain\" disabled>" in page
    response = client.post(reverse("annotation:question_edit", args=[question.pk]),
                           {"task": "Description", "text": "改了"})
    assert response.status_code == 400 and "is frozen: copy it as a new version" in response.content.decode()
    question.refresh_from_db()
    assert question.text == "原文"


def test_only_curators_write_questions(client, researcher, image, dataset):
    client.force_login(researcher)
    assert client.get(reverse("annotation:image", args=[image.pk])).status_code == 200
    assert _new(client, image, dataset=dataset.pk, task="OCR", text="x").status_code == 403
    assert client.post(reverse("annotation:image_edit", args=[image.pk]), {"tags": "x"}).status_code == 403
    assert not Question.objects.exists() and not Image.objects.get().tags.exists()
