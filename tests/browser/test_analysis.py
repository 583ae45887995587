"""A researcher, in real Chromium, compares two critics with the humans: Chinese labels, tables and plots."""

import pytest

from tests.conftest import browser_login, screenshot
from tests.evaluation.analysis_data import random_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_renders_the_agreement_page_with_chinese_labels(page, researcher):
    world = random_world(questions=40)
    browser_login(page, "rex")
    page.click("nav >> text=一致性 Agreement")
    page.select_option("select[name=critic_run]", [str(c.pk) for c in world["critics"]])
    page.click("[data-testid=agreement-form] button")
    page.wait_for_selector("[data-testid=overall] [data-testid=agreement-row]")
    assert page.locator("[data-testid=overall] [data-testid=agreement-row]").count() == 2
    assert "评委 judge-a" in page.inner_text("[data-testid=overall]")
    assert "描述类 Description (Des)" in page.inner_text("[data-testid=breakdown]")
    # The SVG text really laid out with a CJK font: a Chinese label is wider than zero and than its Latin part.
    width = page.evaluate("""() => { const t = [...document.querySelectorAll('svg.plot text')]
        .find(e => e.textContent.startsWith('人工评分')); return t ? t.getBBox().width : 0; }""")
    assert width > 150
    page.wait_for_selector("[data-testid=alpha]")  # human-human agreement loads after the page
    page.click("text=模型 Model >> nth=-1")
    page.wait_for_selector("[data-testid=breakdown] >> text=模型甲 Qwen-VL")
    assert "nan" not in page.inner_text("#report").lower()
    screenshot(page, "analysis-agreement")
    page.click("nav >> text=排行榜 Leaderboard")
    page.wait_for_selector("[data-testid=leaderboard-row]")
    screenshot(page, "analysis-leaderboard")
