"""A curator reviews proposed rewrites with the keyboard only."""

import pytest

from annotation.models import Question
from tests.conftest import browser_login, screenshot
from tests.factories import make_dataset, make_question

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_reviews_rewrites_with_the_keyboard(page, curator):
    dataset = make_dataset(name="审核")
    seed = make_question(dataset=dataset, group="00030000", task="Counting", text="图中有3只猫吗？")
    for text, drift in [("图里有三只猫吗？", []), ("图中有4只猫吗？", [{"kind": "number", "token": "3", "message": "3 不见了"}]),
                        ("请问有3只猫吗？", [])]:
        Question.objects.create(dataset=dataset, image=seed.image, task=seed.task, group=seed.group, text=text,
                                status="proposed", origin="llm", drift=drift)
    browser_login(page, "cora")
    page.goto(f"/datasets/{dataset.pk}/review/")
    page.wait_for_selector(".proposal.selected")
    page.keyboard.press("a")  # accept the first
    page.wait_for_selector("#proposals .proposal:nth-child(1) [data-testid=proposal-status]")
    page.keyboard.press("r")  # the selection moved on: reject the flagged one
    page.wait_for_selector("#proposals .proposal:nth-child(2) [data-testid=proposal-status]")
    page.keyboard.press("e")  # edit the third, then Enter accepts the edit
    page.keyboard.press("End")
    page.keyboard.type("（请回答是或否）")
    page.keyboard.press("Enter")
    page.wait_for_selector("#proposals .proposal:nth-child(3) [data-testid=proposal-status]")
    screenshot(page, "review-keyboard")
    result = {q.text: (q.status, q.variant) for q in Question.objects.filter(group="00030000").exclude(pk=seed.pk)}
    assert result == {"图里有三只猫吗？": ("accepted", 1), "图中有4只猫吗？": ("rejected", None),
                      "请问有3只猫吗？（请回答是或否）": ("accepted", 2)}
