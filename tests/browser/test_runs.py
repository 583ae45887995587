"""A researcher, in real Chromium: adds an endpoint, starts a run, watches it, reads answers; then
starts a critic run over the finished inference run and reads a critique."""

import json

import pytest

from evaluation.models import CriticRun, InferenceRun
from tests.chat_server import ChatServer
from tests.conftest import browser_login, screenshot
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def judge(messages, request) -> str:
    text = messages[-1]["content"] if isinstance(messages[-1]["content"], str) else ""
    if "评分" in text or "Rating" in text:
        return json.dumps({"Rating": 7, "Reason": "回答基本正确，但<细节>不足。"}, ensure_ascii=False)
    return "图中是一只<猫>。\n第二行"


def test_it_runs_a_model_and_a_critic_from_the_browser(page, celery_worker, researcher):
    dataset = make_dataset(name="浏览器数据集")
    for i in range(30):
        make_question(dataset=dataset, group=f"0000{i:04d}", text=f"描述图片{i}。")
    with ChatServer(reply=judge, latency_s=0.15) as server:
        browser_login(page, "rex")
        page.click("nav >> text=模型 Endpoints")
        page.fill("input[name=name]", "local-vllm")
        page.select_option("select[name=role]", "vlm")
        page.select_option("select[name=backend]", "openai")
        page.fill("input[name=base_url]", server.base_url)
        page.fill("input[name=model_name]", "Qwen2-VL-7B")
        page.fill("input[name=concurrency]", "1")
        page.click("[data-testid=endpoint-form] button[type=submit]")
        page.wait_for_selector("text=Endpoint local-vllm added.")

        page.goto("/runs/new")
        page.select_option("select[name=endpoint]", label="local-vllm")
        page.select_option("select[name=dataset]", label="浏览器数据集")
        page.click("button[type=submit]")
        page.wait_for_url("**/runs/*/")
        # The bar moves while the worker answers (htmx polls the progress card every second).
        page.wait_for_function("Number(document.querySelector('[data-testid=run-done]').textContent) > 0", timeout=30_000)
        first = int(page.inner_text("[data-testid=run-done]"))
        assert first < 30
        screenshot(page, "run-in-progress")
        page.wait_for_selector("[data-testid=run-status]:text('done')", timeout=60_000)
        assert page.inner_text("[data-testid=run-done]") == "30"
        page.reload()
        answer = page.locator(".answer").first
        assert answer.inner_text() == "图中是一只<猫>。\n第二行"  # escaped, line break kept
        screenshot(page, "run-done")
        run = InferenceRun.objects.get()

        page.goto("/endpoints/")
        page.fill("input[name=name]", "judge")
        page.select_option("select[name=role]", "critic")
        page.select_option("select[name=backend]", "openai")
        page.fill("input[name=base_url]", server.base_url)
        page.fill("input[name=model_name]", "judge")
        page.click("[data-testid=endpoint-form] button[type=submit]")
        page.wait_for_selector("text=Endpoint judge added.")
        page.goto(f"/critic-runs/new?run={run.pk}")
        page.select_option("select[name=critic]", label="judge")
        page.click("button[type=submit]")
        page.wait_for_selector("[data-testid=run-status]:text('done')", timeout=60_000)
        page.reload()
        page.click("[data-testid=score-row] >> text=详情 Open")
        assert page.inner_text("[data-testid=critic-score]") == "7"
        assert page.inner_text("[data-testid=critique-text]") == "回答基本正确，但<细节>不足。"
        page.click("[data-testid=show-prompt]")
        assert "描述图片" in page.inner_text("[data-testid=detail-prompt]")
        screenshot(page, "critique")
    assert CriticRun.objects.get().done == 30


def test_it_imports_critiques_made_elsewhere_from_the_run_page(page, researcher, tmp_path):
    dataset = make_dataset(name="外部评分")
    run = make_run(endpoint=make_endpoint(name="vlm-elsewhere"), dataset=dataset, status="done", done=3, total=3)
    for i in range(3):
        make_response(run=run, question=make_question(dataset=dataset, group=f"0000{i:04d}"), text=f"回答{i}")
    critiques = tmp_path / "critiques.jsonl"
    critiques.write_text("".join(json.dumps({"question_id": f"0000{i:04d}-0", "Rating": rating, "Reason": "<b>理由</b>"},
                                            ensure_ascii=False) + "\n" for i, rating in enumerate([8, 3, -1])),
                         encoding="utf-8")

    browser_login(page, "rex")
    page.goto(f"/runs/{run.pk}/")
    page.click("text=导入评分 Import critiques")
    page.fill("input[name=critic_name]", "CritiqueVLM (released)")
    page.set_input_files("input[name=file]", str(critiques))
    page.click("form.card button[type=submit]")
    page.wait_for_url("**/critic-runs/*/")

    assert page.inner_text("[data-testid=run-done]") == "2"
    assert page.inner_text("[data-testid=run-unparsed]") == "1"
    screenshot(page, "critiques-imported")
    imported = CriticRun.objects.get()
    assert list(imported.inference_runs.all()) == [run] and imported.name == "CritiqueVLM (released)"
