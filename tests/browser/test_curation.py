"""A curator's path through real Chromium: upload a batch (one bad file), write a dialogue question,
find it in the library."""

from __future__ import annotations

import pytest

from annotation.models import Question
from tests.conftest import browser_login, screenshot
from tests.factories import make_dataset, png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_uploads_writes_a_dialogue_and_finds_it_in_the_library(page, curator):
    make_dataset(name="梗图 memes")
    browser_login(page, "cora")
    page.wait_for_url("**/images/")
    page.click("nav >> text=上传 Upload")
    page.wait_for_url("**/images/upload/")

    # Three files onto the drop zone's input, one of them not an image.
    page.set_input_files("#dropzone input[type=file]", files=[
        {"name": "cat.png", "mimeType": "image/png", "buffer": png_bytes(width=320, height=200, seed=41)},
        {"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": "这不是图片 not an image".encode()},
        {"name": "dog.png", "mimeType": "image/png", "buffer": png_bytes(width=200, height=320, seed=42)},
    ])
    page.wait_for_function("document.querySelectorAll('#upload-results .upload-row.pending').length === 0"
                           " && document.querySelectorAll('#upload-results .upload-row').length === 3")
    assert page.locator(".upload-row.created").count() == 2
    rejected = page.locator(".upload-row.rejected")
    assert rejected.count() == 1
    assert "notes.jpg" in rejected.inner_text() and "not an image Pillow can read" in rejected.inner_text()
    screenshot(page, "curation-upload")

    page.locator(".upload-row.created", has_text="cat.png").locator("a").click()
    page.wait_for_url("**/images/*/")
    page.select_option("#add-question select[name=task]", "Coherence")
    page.fill("#add-question textarea[name=history-0-user]", "图里有什么动物？")
    page.fill("#add-question textarea[name=history-0-assistant]", "有一只狗。")
    page.click("#add-question [data-add-round]")
    page.fill("#add-question textarea[name=history-1-user]", "你看错了，再看看。")
    page.fill("#add-question textarea[name=history-1-assistant]", "抱歉，是一只猫。")
    page.fill("#add-question textarea[name=text]", "它是什么颜色的猫？")
    page.fill("#add-question textarea[name=reference]", "一只彩色的猫。")
    screenshot(page, "curation-dialogue-editor")
    page.click("#add-question button[type=submit]")
    page.wait_for_url("**/questions/*/")
    assert "00110000-0" in page.locator("h1").inner_text()

    question = Question.objects.get()
    assert question.history == [{"user": "图里有什么动物？", "assistant": "有一只狗。"},
                                {"user": "你看错了，再看看。", "assistant": "抱歉，是一只猫。"}]

    page.click("nav >> text=图片库 Images")
    page.fill("input[name=q]", "什么颜色的猫")
    page.click(".filters button[type=submit]")
    page.wait_for_function("document.querySelectorAll('#grid .thumbs li a').length === 2")
    assert page.locator("#grid .thumbs li").count() == 1
    assert "cat.png" in page.locator("#grid").inner_text()
    screenshot(page, "curation-library")
