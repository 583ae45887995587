"""Each role logs in through real Chromium and lands on its own page."""

import pytest

from tests.conftest import browser_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("role,username,path,heading", [
    ("curator", "cora", "/images/", "图片库"),
    ("annotator", "anna", "/score/", "评分"),
    ("researcher", "rex", "/runs/", "推理运行"),
])
def test_it_logs_each_role_in_to_its_page(page, request, role, username, path, heading):
    request.getfixturevalue(role)
    browser_login(page, username)
    page.wait_for_url(f"**{path}")
    assert heading in page.locator("h1").inner_text()
    assert page.locator("nav .who").inner_text() == username
    screenshot(page, f"login-{role}")


def test_it_rejects_a_wrong_password(page, curator):
    page.goto("/login/")
    page.fill("input[name=username]", "cora")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")
    assert "用户名或密码不正确" in page.locator(".error").inner_text()
