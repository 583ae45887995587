"""An annotator skips one response and scores ten with the keyboard only, sees the side by side
after each, then changes one score and finds both values in its history."""

import pytest

from annotation import scoring
from annotation.models import Assignment, HumanScore, HumanScoreRevision
from tests.conftest import browser_login, screenshot
from tests.factories import make_critic_run, make_critic_score, make_scoring_dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_it_scores_ten_items_by_keyboard_then_edits_one(page, annotator):
    dataset, responses = make_scoring_dataset(questions=3, models=2, tasks=("Description", "OCR"),
                                              annotators_per_response=1)
    critic = make_critic_run(name="judge")
    for r in responses:
        make_critic_score(critic_run=critic, response=r, score=3, critique=f"评语 critique for {r.pk}")
    scoring.queue_sync(dataset)
    browser_login(page, "anna")
    page.goto("/score/")
    page.keyboard.press("n")
    page.wait_for_selector("[data-score-form]")
    assert "/score/item/" in page.url

    # `s` skips even with a score picked: nothing is saved, no critic score shows, the next item comes.
    skipped_text = page.locator("[data-testid=response-text]").inner_text()
    page.keyboard.press("7")
    page.keyboard.press("s")
    page.wait_for_selector("[data-testid=note]:has-text('Skipped')")
    assert page.locator("[data-score-form]").count() == 1
    assert page.locator("[data-testid=response-text]").inner_text() != skipped_text
    assert page.locator("[data-testid=critic-row]").count() == 0 and page.locator("[data-testid=side-by-side]").count() == 0
    assert not HumanScore.objects.exists()
    assert Assignment.objects.get(status=Assignment.Status.SKIPPED).annotator == annotator

    keys = ["5", "6", "7", "8", "9", "0", "4", "5", "6", "7"]
    seen = {skipped_text}
    for i, key in enumerate(keys):
        text = page.locator("[data-testid=response-text]").inner_text()
        assert text not in seen
        seen.add(text)
        assert page.locator("[data-testid=critic-row]").count() == 0, "blind until submitted"
        page.keyboard.press(key)
        assert page.locator(f"input[name=score][data-key='{key}']").is_checked()
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid=side-by-side]")
        expected = "10" if key == "0" else key
        assert page.locator("[data-testid=my-score]").inner_text() == expected
        assert "评语 critique for" in page.locator("[data-testid=critic-row]").inner_text()
        assert "/score/done/" in page.url
        if i == 0:
            screenshot(page, "scoring-side-by-side")
        if i < len(keys) - 1:
            page.keyboard.press("n")
            page.wait_for_selector("[data-score-form]")
            if i == 0:
                screenshot(page, "scoring-item")
    assert HumanScore.objects.filter(annotator=annotator).count() == 10
    assert page.locator("[data-testid=today]").inner_text() == "10"

    # Change the first score (a 5) to a 3, with the rationale a low score needs.
    first = HumanScore.objects.filter(annotator=annotator).order_by("created_at").first()
    page.goto("/score/mine/")
    page.click(f"[data-testid=open-{first.response_id}]")
    page.click("details.edit summary")
    page.click("[data-edit-form] label.score-button:has(input[value='3'])")
    page.fill("[data-edit-form] textarea[name=rationale]", "再看一遍 on second look, it misses the text")
    page.click("[data-testid=save-edit]")
    page.wait_for_selector("[data-testid=history]")
    history = page.locator("[data-testid=history]").inner_text()
    assert "3" in history and "5" in history
    assert [r.score for r in HumanScoreRevision.objects.filter(human_score=first)] == [5]
    first.refresh_from_db()
    assert first.score == 3
    screenshot(page, "scoring-edit-history")
