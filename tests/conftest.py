from __future__ import annotations

import os

# Playwright's sync API runs an event loop in the test thread; the ORM calls the tests make around it
# are still plain synchronous calls, so Django's async-safety guard would be a false alarm here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def media_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(autouse=True)
def _test_settings(settings, media_root):
    settings.MEDIA_ROOT = media_root
    # Real hashing costs ~0.3 s a user; tests make hundreds of users and test no hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(**kwargs):
    # Imported here so pure-module tests can run with `-p no:django`.
    from tests.factories import make_user

    return make_user(**kwargs)


@pytest.fixture
def curator(db):
    return make_user(username="cora", role="curator")


@pytest.fixture
def annotator(db):
    return make_user(username="anna", role="annotator")


@pytest.fixture
def researcher(db):
    return make_user(username="rex", role="researcher")


@pytest.fixture
def staff(db):
    return make_user(username="sam", staff=True)


@pytest.fixture
def nobody(db):
    return make_user(username="nemo")


@pytest.fixture(scope="module")
def celery_worker(request, django_db_setup, django_db_blocker, media_root):
    """A real Celery worker for the test module, consuming both queues from the configured broker
    and writing to the test database. Tests that use it need ``transactional_db``. Module scope,
    so tests that start (and kill) their own workers can live in modules without one."""
    from tests.workers import purge_broker, start_worker, stop_worker, wait_for

    with django_db_blocker.unblock():
        purge_broker()
        ARTIFACTS.mkdir(exist_ok=True)
        log_path = ARTIFACTS / f"worker-{request.module.__name__.rsplit('.', 1)[-1]}.log"
        process = start_worker(name="session", log_path=log_path, MEDIA_ROOT=str(media_root))
        try:
            wait_for(lambda: "ready." in log_path.read_text() or process.poll() is not None, timeout=60,
                     what="the Celery worker to start")
            if process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{log_path.read_text()[-3000:]}")
            yield process
        finally:
            stop_worker(process)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, locale="zh-CN", viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def browser_login(page, username: str) -> None:
    from tests.factories import PASSWORD

    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory) -> Path:
    from evaluation.tiny_models import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-causal-lm"))


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    from evaluation.tiny_models import build_tiny_llava

    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))
