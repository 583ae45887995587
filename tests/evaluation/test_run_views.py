import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from evaluation.models import EndpointCheck, InferenceRun, ModelEndpoint, Response
from tests.factories import make_dataset, make_endpoint, make_question, make_response, make_run


@pytest.fixture
def run(db):
    dataset = make_dataset()
    run = make_run(endpoint=make_endpoint(), dataset=dataset, status="done", total=2, done=1, failed=1)
    make_response(run=run, question=make_question(dataset=dataset, group="00000000", text="<b>问</b>"),
                  text="<script>alert(1)</script>\n第二行")
    make_response(run=run, question=make_question(dataset=dataset, group="00020000", task="Recognition"), text="",
                  error="HTTP 400: bad request")
    return run


RESEARCHER_URLS = [
    ("evaluation:endpoints", lambda run: []), ("evaluation:endpoint", lambda run: [run.endpoint_id]),
    ("evaluation:run_create", lambda run: []), ("evaluation:run", lambda run: [run.pk]),
    ("evaluation:run_export", lambda run: [run.pk]), ("evaluation:responses_import", lambda run: []),
]


@pytest.mark.parametrize("name,args", RESEARCHER_URLS)
def test_it_keeps_research_pages_to_researchers(client, run, curator, annotator, name, args):
    for user in (curator, annotator):
        client.force_login(user)
        assert client.get(reverse(name, args=args(run))).status_code == 403


@pytest.mark.parametrize("name", ["evaluation:run_cancel", "evaluation:run_resume", "evaluation:run_retry_failed",
                                  "evaluation:endpoint_check"])
def test_it_refuses_run_actions_to_others_and_to_get(client, run, annotator, researcher, name):
    pk = run.endpoint_id if name == "evaluation:endpoint_check" else run.pk
    client.force_login(annotator)
    assert client.post(reverse(name, args=[pk])).status_code == 403
    client.force_login(researcher)
    assert client.get(reverse(name, args=[pk])).status_code == 405


def test_it_adds_an_endpoint(client, researcher):
    client.force_login(researcher)
    response = client.post(reverse("evaluation:endpoints"), {
        "name": "qwen", "role": "vlm", "backend": "openai", "base_url": "http://gpu:8000/v1", "model_name": "Qwen2-VL",
        "api_key_env": "QWEN_KEY", "max_new_tokens": 256, "temperature": 0, "top_p": 1, "batch_size": 8,
        "concurrency": 16, "device": "auto", "dtype": "auto", "timeout_s": 60, "max_retries": 3})
    endpoint = ModelEndpoint.objects.get(name="qwen")
    assert response.status_code == 302 and endpoint.concurrency == 16 and endpoint.created_by == researcher


def test_it_explains_a_bad_endpoint(client, researcher):
    client.force_login(researcher)
    response = client.post(reverse("evaluation:endpoints"), {
        "name": "x", "role": "vlm", "backend": "transformers", "api_key_env": "sk-123 456", "max_new_tokens": 1,
        "temperature": 0, "top_p": 1, "batch_size": 1, "concurrency": 1, "device": "auto", "dtype": "auto",
        "timeout_s": 1, "max_retries": 0})
    html = response.content.decode()
    assert response.status_code == 400
    assert "needs the local directory" in html and "NAME of an environment variable" in html
    assert not ModelEndpoint.objects.filter(name="x").exists()


def test_it_queues_an_endpoint_test(client, run, researcher, django_capture_on_commit_callbacks):
    client.force_login(researcher)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("evaluation:endpoint_check", args=[run.endpoint_id]),
                               headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Waiting for a worker" in response.content.decode()
    assert len(callbacks) == 1 and EndpointCheck.objects.get().status == "queued"


def test_it_starts_a_run_after_commit(client, researcher, django_capture_on_commit_callbacks):
    dataset = make_dataset()
    make_question(dataset=dataset, group="00000000")
    make_question(dataset=dataset, group="00000000", variant=1, text="换个说法")
    make_question(dataset=dataset, group="00030000", task="Counting", text="几个？")
    endpoint = make_endpoint()
    client.force_login(researcher)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("evaluation:run_create"), {"endpoint": endpoint.pk, "dataset": dataset.pk,
                                                                  "tasks": ["Description"], "variants": "0"})
    run = InferenceRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("evaluation:run", args=[run.pk])
    assert (run.total, run.tasks, run.variants, run.status) == (1, ["Description"], [0], "queued")
    assert run.params["base_url"] == endpoint.base_url
    assert len(callbacks) == 1


def test_it_refuses_bad_variant_filters(client, researcher):
    client.force_login(researcher)
    endpoint, dataset = make_endpoint(), make_dataset()
    make_question(dataset=dataset, group="00000000")
    for variants, error in (("a-b", "is not a number or a range"), ("5-1", "runs backwards; write 1-5"),
                            ("-1", "is not a number or a range"), ("7", "No accepted questions in")):
        response = client.post(reverse("evaluation:run_create"), {"endpoint": endpoint.pk, "dataset": dataset.pk,
                                                                  "variants": variants})
        assert response.status_code == 400 and error in response.content.decode(), variants
    assert not InferenceRun.objects.exists()


def test_it_shows_answers_escaped_with_whitespace_kept(client, run, researcher, django_assert_max_num_queries):
    client.force_login(researcher)
    with django_assert_max_num_queries(12):
        html = client.get(reverse("evaluation:run", args=[run.pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "&lt;b&gt;问&lt;/b&gt;" in html
    assert 'class="pre answer"' in html and "HTTP 400: bad request" in html
    assert 'data-testid="retry-failed"' in html


def test_it_filters_answers_with_htmx(client, run, researcher):
    client.force_login(researcher)
    html = client.get(reverse("evaluation:run", args=[run.pk]), {"status": "failed"},
                      headers={"HX-Request": "true", "HX-Target": "answers"}).content.decode()
    assert html.startswith('\n<div id="answers">') or html.lstrip().startswith('<div id="answers">')
    assert "HTTP 400" in html and "alert(1)" not in html
    html = client.get(reverse("evaluation:run", args=[run.pk]), {"task": "Description"},
                      headers={"HX-Request": "true", "HX-Target": "answers"}).content.decode()
    assert "alert(1)" in html and "HTTP 400" not in html


def test_it_polls_only_the_progress_with_htmx(client, run, researcher):
    client.force_login(researcher)
    html = client.get(reverse("evaluation:run", args=[run.pk]), headers={"HX-Request": "true"}).content.decode()
    assert 'id="progress"' in html and 'id="answers"' not in html and "<html" not in html


def test_it_cancels_and_resumes_from_the_page(client, researcher, django_capture_on_commit_callbacks):
    run = make_run(endpoint=make_endpoint(), dataset=make_dataset())
    client.force_login(researcher)
    response = client.post(reverse("evaluation:run_cancel", args=[run.pk]), headers={"HX-Request": "true"})
    assert 'data-status="cancelled"' in response.content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(reverse("evaluation:run_resume", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "queued" and len(callbacks) == 1


def test_it_retries_failed_items(client, run, researcher, django_capture_on_commit_callbacks):
    client.force_login(researcher)
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(reverse("evaluation:run_retry_failed", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "queued" and run.failed == 0 and len(callbacks) == 1
    assert not Response.objects.filter(run=run).exclude(error="").exists()


def test_it_exports_and_imports_official_jsonl(client, run, researcher):
    client.force_login(researcher)
    exported = client.get(reverse("evaluation:run_export", args=[run.pk])).content.decode()
    lines = [json.loads(line) for line in exported.splitlines()]
    assert lines == [{"question_id": "00000000-0", "predict": "<script>alert(1)</script>\n第二行"}]
    upload = SimpleUploadedFile("answers.jsonl", (exported + '{"question_id": "nope-1", "predict": "x"}\nnot json\n')
                                .encode())
    response = client.post(reverse("evaluation:responses_import"),
                           {"endpoint": run.endpoint_id, "dataset": run.dataset_id, "file": upload})
    html = response.content.decode()
    assert "imported=1 unchanged=0 failed=2" in html
    assert "nope-1 is not in dataset" in html and "invalid JSON" in html
    imported = InferenceRun.objects.get(source="import")
    assert Response.objects.get(run=imported).text == "<script>alert(1)</script>\n第二行"


def _import(client, of, text: str, **extra):
    upload = SimpleUploadedFile("answers.jsonl", text.encode())
    return client.post(reverse("evaluation:responses_import"),
                       {"endpoint": of.endpoint_id, "dataset": of.dataset_id, "file": upload, **extra})


def test_a_fixed_file_goes_into_the_run_of_the_partial_import(client, run, researcher):
    client.force_login(researcher)
    good = '{"question_id": "00000000-0", "predict": "甲"}\n'
    page = _import(client, run, good + '{"question_id": "00020000-0", "predict": 3}\n').content.decode()
    imported = InferenceRun.objects.get(source="import")
    assert "imported=1 unchanged=0 failed=1" in page and 'data-testid="add-to-run"' in page
    assert f'name="run" value="{imported.pk}"' in page
    page = _import(client, run, good + '{"question_id": "00020000-0", "predict": "乙"}\n', run=imported.pk)
    assert page.status_code == 302 and page.url == reverse("evaluation:run", args=[imported.pk])
    assert InferenceRun.objects.filter(source="import").count() == 1
    assert sorted(Response.objects.filter(run=imported).values_list("text", flat=True)) == ["乙", "甲"]


def test_an_upload_with_nothing_to_import_stores_no_run(client, run, researcher):
    client.force_login(researcher)
    for text, error in (("", "所提交的是空文件。"),  # Django's own message, in the site language ("\n\n", "Nothing imported"),
                        ('not json\n{"question_id": "nope-1", "predict": "x"}\n', "Nothing imported")):
        page = _import(client, run, text)
        assert page.status_code == 400 and error in page.content.decode()
    assert not InferenceRun.objects.filter(source="import").exists()


def test_answers_with_unicode_line_separators_survive_export_and_import(client, run, researcher):
    client.force_login(researcher)
    text = "第一行\u2028第二行\u0085第三行\u2029完"
    line = json.dumps({"question_id": "00000000-0", "predict": text}, ensure_ascii=False)
    page = _import(client, run, line + "\r\n")
    assert page.status_code == 302
    assert Response.objects.get(run__source="import").text == text
