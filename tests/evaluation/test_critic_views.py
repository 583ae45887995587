import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from evaluation import critics
from evaluation.models import CriticRun, PromptTemplate
from tests.factories import (
    make_critic_score,
    make_dataset,
    make_endpoint,
    make_question,
    make_response,
    make_run,
)


@pytest.fixture
def scored(db):
    dataset = make_dataset()
    run = make_run(endpoint=make_endpoint(), dataset=dataset, status="done", done=1, total=1)
    seed = make_question(dataset=dataset, group="00110000", task="Coherence", text="那后来呢？",
                         history=[{"user": "第一问", "assistant": "第一答"}, {"user": "第二问", "assistant": "第二答"},
                                  {"user": "第三问", "assistant": "第三答"}], reference="参考<i>答案</i>")
    response = make_response(run=run, question=seed, text="回答")
    critic_run = CriticRun.objects.create(critic=make_endpoint(name="judge", role="critic"), status="done",
                                          template=critics.critic_template_default(), done=1, total=1)
    critic_run.inference_runs.set([run])
    score = make_critic_score(critic_run=critic_run, response=response, score=3, critique="<b>理由</b>",
                              raw_output='{"Rating": 3, "Reason": "<b>理由</b>"}', prompt="PROMPT-SENT-XYZ",
                              expected_score=3.4, expected_spread=0.8)
    return {"run": run, "response": response, "critic_run": critic_run, "score": score}


@pytest.mark.parametrize("name,arg", [("evaluation:critic_run_create", None), ("evaluation:critic_run", "critic_run"),
                                      ("evaluation:critic_run_export", "critic_run"), ("evaluation:response", "response"),
                                      ("evaluation:templates", None), ("evaluation:critiques_import", None)])
def test_it_keeps_critic_pages_to_researchers(client, scored, annotator, researcher, name, arg):
    url = reverse(name, args=[scored[arg].pk] if arg else [])
    client.force_login(annotator)
    assert client.get(url).status_code == 403
    client.force_login(researcher)
    assert client.get(url).status_code == 200


def test_it_starts_a_critic_run_after_commit(client, scored, researcher, django_capture_on_commit_callbacks):
    client.force_login(researcher)
    critic = make_endpoint(name="judge2", role="critic")
    template = critics.critic_template_default()
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(reverse("evaluation:critic_run_create"), {
            "critic": critic.pk, "template": template.pk, "inference_runs": [scored["run"].pk], "max_retries": 1})
    run = CriticRun.objects.get(critic=critic)
    assert response.status_code == 302 and (run.total, run.max_retries, run.status) == (1, 1, "queued")
    assert len(callbacks) == 1


def test_it_refuses_a_vlm_as_critic(client, scored, researcher):
    client.force_login(researcher)
    response = client.post(reverse("evaluation:critic_run_create"), {
        "critic": scored["run"].endpoint_id, "template": critics.critic_template_default().pk,
        "inference_runs": [scored["run"].pk], "max_retries": 1})
    assert response.status_code == 400


def test_it_shows_a_critique_escaped_with_raw_and_prompt_on_demand(client, scored, researcher):
    client.force_login(researcher)
    url = reverse("evaluation:response", args=[scored["response"].pk])
    html = client.get(url).content.decode()
    assert "&lt;b&gt;理由&lt;/b&gt;" in html and "<b>理由</b>" not in html
    assert "PROMPT-SENT-XYZ" not in html, "the prompt is shown on demand only"
    partial = client.get(url, {"show": "prompt", "score": scored["score"].pk}, headers={"HX-Request": "true"})
    assert "PROMPT-SENT-XYZ" in partial.content.decode() and "<html" not in partial.content.decode()
    raw = client.get(url, {"show": "raw", "score": scored["score"].pk}, headers={"HX-Request": "true"})
    assert "&quot;Rating&quot;: 3" in raw.content.decode()


def test_it_shows_progress_and_filters_scores(client, scored, researcher):
    client.force_login(researcher)
    url = reverse("evaluation:critic_run", args=[scored["critic_run"].pk])
    html = client.get(url).content.decode()
    assert 'data-testid="run-unparsed">0' in html and "3.40" in html
    partial = client.get(url, {"status": "unparsed"}, headers={"HX-Request": "true", "HX-Target": "scores"})
    assert "No scores yet" in partial.content.decode()


def test_it_saves_a_template_edit_as_a_new_version(client, researcher):
    client.force_login(researcher)
    template = critics.critic_template_default()
    body = template.body.replace("专家", "资深专家", 1)
    response = client.post(reverse("evaluation:template", args=[template.pk]), {"body": body, "note": "wording"})
    new = PromptTemplate.objects.get(kind="critic", name=template.name, version=2)
    assert response.status_code == 302 and new.body == body and new.created_by == researcher
    template.refresh_from_db()
    assert "资深专家" not in template.body


def test_it_refuses_a_template_without_required_placeholders(client, researcher):
    client.force_login(researcher)
    template = critics.critic_template_default()
    response = client.post(reverse("evaluation:template", args=[template.pk]), {"body": "请打分 {{question}}"})
    assert response.status_code == 400 and "answer" in response.content.decode()
    assert PromptTemplate.objects.filter(kind="critic").count() == 1


def test_it_previews_a_template_for_a_three_round_dialogue(client, scored, researcher):
    client.force_login(researcher)
    template = critics.critic_template_default()
    html = client.get(reverse("evaluation:template_preview", args=[template.pk]),
                      {"response": scored["response"].pk}, headers={"HX-Request": "true"}).content.decode()
    assert html.index("第1轮") < html.index("第2轮") < html.index("第3轮")
    assert "参考&lt;i&gt;答案&lt;/i&gt;" in html and "多轮对话" in html


def test_it_takes_a_pasted_template_as_version_1(client, researcher):
    client.force_login(researcher)
    body = "你是评审。问题：{{question}}\n回答：{{answer}}\n输出 {\"Rating\": 1-10}"
    response = client.post(reverse("evaluation:template_create"), {"kind_choice": "critic", "name": "critiquevlm",
                                                                   "body": body, "note": "from the paper"})
    template = PromptTemplate.objects.get(name="critiquevlm")
    assert response.status_code == 302 and (template.version, template.body, template.kind) == (1, body, "critic")
    again = client.post(reverse("evaluation:template_create"), {"kind_choice": "critic", "name": "critiquevlm",
                                                                "body": body})
    assert again.status_code == 400 and "already has that name" in again.content.decode()
    bad = client.post(reverse("evaluation:template_create"), {"kind_choice": "rewrite", "name": "r", "body": "{{answer}}"})
    assert bad.status_code == 400 and not PromptTemplate.objects.filter(name="r").exists()


def test_it_imports_critiques_from_the_page_and_reports_bad_lines(client, scored, researcher):
    client.force_login(researcher)
    run = scored["run"]
    page = client.get(reverse("evaluation:critiques_import") + f"?run={run.pk}").content.decode()
    assert f'<option value="{run.pk}" selected>' in page
    upload = SimpleUploadedFile("critiques.jsonl", (
        b'{"question_id": "00110000-0", "Rating": 7, "Reason": "<script>x</script>"}\n'
        b'{"question_id": "nope-1", "Rating": 3}\nnot json\n'))

    response = client.post(reverse("evaluation:critiques_import"),
                           {"run": run.pk, "critic_name": "judge", "file": upload})

    html = response.content.decode()
    assert response.status_code == 200
    assert "imported=1 unchanged=0 failed=2" in html
    assert "nope-1 has no answer in run" in html and "invalid JSON" in html
    imported = CriticRun.objects.exclude(pk=scored["critic_run"].pk).get()
    assert imported.critic.name == "judge" and imported.done == 1  # a critic endpoint's name links it
    assert imported.scores.get().score == 7


def test_it_stores_nothing_when_no_critique_line_can_be_read(client, scored, researcher):
    client.force_login(researcher)
    upload = SimpleUploadedFile("critiques.jsonl", b'{"question_id": "nope-1", "Rating": 3}\n')
    before = CriticRun.objects.count()

    response = client.post(reverse("evaluation:critiques_import"),
                           {"run": scored["run"].pk, "critic_name": "elsewhere", "file": upload})

    assert response.status_code == 400
    assert "Nothing imported" in response.content.decode()
    assert CriticRun.objects.count() == before


def test_it_imports_critiques_with_a_clean_file_and_shows_the_run(client, scored, researcher):
    client.force_login(researcher)
    upload = SimpleUploadedFile("critiques.jsonl", b'{"question_id": "00110000-0", "Rating": -1, "Reason": ""}\n')

    response = client.post(reverse("evaluation:critiques_import"),
                           {"run": scored["run"].pk, "critic_name": "released-runner", "file": upload})

    imported = CriticRun.objects.get(name="released-runner")
    assert response.status_code == 302 and response["Location"] == reverse("evaluation:critic_run", args=[imported.pk])
    assert (imported.done, imported.unparsed, imported.critic) == (0, 1, None)


@pytest.mark.parametrize("name", ["evaluation:critiques_import", "evaluation:responses_import"])
def test_it_refuses_an_upload_that_is_not_utf8_text(client, scored, researcher, name):
    client.force_login(researcher)
    run = scored["run"]
    fields = {"run": run.pk, "critic_name": "x"} if name == "evaluation:critiques_import" else {
        "endpoint": run.endpoint_id, "dataset": run.dataset_id}
    before = CriticRun.objects.count(), run.responses.count()

    response = client.post(reverse(name), {**fields, "file": SimpleUploadedFile("x.jsonl", b"\xff\xfe\x00bad")})

    assert response.status_code == 400 and "not UTF-8 text" in response.content.decode()
    assert (CriticRun.objects.count(), run.responses.count()) == before
