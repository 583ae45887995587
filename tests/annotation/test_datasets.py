"""Datasets: create, add by filter or selection (whole groups), remove, freeze, copy as a version,
export; and the import page with its job."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation.models import Dataset, ImportJob, Question
from tests.factories import make_dataset, make_image, make_question, png_bytes


@pytest.fixture
def source(db):
    dataset = make_dataset(name="source")
    image = make_image(seed=21)
    make_question(dataset=dataset, image=image, task="OCR", group="00100000", reference="你好")
    make_question(dataset=dataset, image=image, task="OCR", group="00100000", variant=1, text="上面写着什么？")
    make_question(dataset=dataset, image=image, task="Meme", group="00080000", text="解释这个梗")
    return dataset


def test_it_creates_and_lists_datasets(client, curator):
    client.force_login(curator)
    response = client.post(reverse("annotation:dataset_create"), {"name": "梗图 memes", "description": "第一版"})
    dataset = Dataset.objects.get()
    assert response.url == reverse("annotation:dataset", args=[dataset.pk]) and dataset.created_by == curator
    assert "梗图 memes" in client.get(reverse("annotation:datasets")).content.decode()
    assert client.post(reverse("annotation:dataset_create"), {"name": "梗图 memes"}).status_code == 400


def test_it_adds_questions_by_filter_with_their_whole_group(client, curator, source):
    target = make_dataset(name="target")
    client.force_login(curator)
    client.post(reverse("annotation:dataset_add", args=[target.pk]), {"source": source.pk, "task": "OCR"})
    assert sorted(target.questions.values_list("group", "variant", "reference")) == [
        ("00100000", 0, "你好"), ("00100000", 1, "")]
    # Again: nothing new.
    client.post(reverse("annotation:dataset_add", args=[target.pk]), {"source": source.pk, "task": "OCR"})
    assert target.questions.count() == 2


def test_it_copies_a_selected_rewrite_with_its_seed_and_renumbers_a_clashing_group(client, curator, source):
    target = make_dataset(name="target")
    make_question(dataset=target, task="OCR", group="00100000", text="别的问题")
    rewrite = source.questions.get(variant=1)
    client.force_login(curator)
    client.post(reverse("annotation:dataset_selection", args=[source.pk]),
                {"questions": [rewrite.pk], "action": "copy", "target": target.pk})
    copied = target.questions.exclude(text="别的问题").order_by("variant")
    assert [(q.group, q.variant) for q in copied] == [("00100001", 0), ("00100001", 1)]
    assert copied[1].reference_answer == "你好"


def test_removing_a_seed_removes_its_group(client, curator, source):
    client.force_login(curator)
    seed = source.questions.get(group="00100000", variant=0)
    client.post(reverse("annotation:dataset_selection", args=[source.pk]), {"questions": [seed.pk], "action": "remove"})
    assert list(source.questions.values_list("group", flat=True)) == ["00080000"]


def test_a_frozen_dataset_refuses_edits_with_a_clear_message(client, curator, source):
    client.force_login(curator)
    client.post(reverse("annotation:dataset_freeze", args=[source.pk]))
    source.refresh_from_db()
    assert source.frozen
    question = source.questions.first()
    response = client.post(reverse("annotation:dataset_selection", args=[source.pk]),
                           {"questions": [question.pk], "action": "remove"}, follow=True)
    assert "Dataset “source” is frozen: copy it as a new version to change it." in response.content.decode()
    response = client.post(reverse("annotation:dataset_add", args=[source.pk]), {"source": source.pk}, follow=True)
    assert "is frozen" in response.content.decode()
    assert source.questions.count() == 3


def test_it_copies_a_dataset_as_a_new_editable_version(client, curator, source):
    source.freeze()
    client.force_login(curator)
    response = client.post(reverse("annotation:dataset_copy", args=[source.pk]))
    copy = Dataset.objects.get(parent=source)
    assert response.url == reverse("annotation:dataset", args=[copy.pk])
    assert (copy.name, copy.version, copy.frozen, copy.questions.count()) == ("source v2", 2, False, 3)
    client.post(reverse("annotation:dataset_copy", args=[copy.pk]))
    assert Dataset.objects.get(parent=copy).name == "source v3"


def test_the_dataset_page_lists_filters_and_pages_questions(client, researcher, source, django_assert_max_num_queries):
    client.force_login(researcher)
    with django_assert_max_num_queries(10):
        response = client.get(reverse("annotation:dataset", args=[source.pk]), {"task": "OCR"})
    assert [q.question_id for q in response.context["page"]] == ["00100000-0", "00100000-1"]
    by_id = client.get(reverse("annotation:dataset", args=[source.pk]), {"q": "00080000-0"})
    assert [q.question_id for q in by_id.context["page"]] == ["00080000-0"]
    partial = client.get(reverse("annotation:dataset", args=[source.pk]), headers={"HX-Request": "true"})
    assert partial.content.decode().lstrip().startswith('<div id="questions">')
    assert client.post(reverse("annotation:dataset_freeze", args=[source.pk])).status_code == 403


def test_it_exports_jsonl_csv_and_images_zip(client, researcher, source):
    client.force_login(researcher)
    lines = client.get(reverse("annotation:dataset_export", args=[source.pk, "jsonl"])).content.decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["question_id"] for r in records] == ["00080000-0", "00100000-0", "00100000-1"]
    assert records[2]["ref_answer"] == "你好" and records[2]["image_path"] == "images/img-21.png"
    csv = client.get(reverse("annotation:dataset_export", args=[source.pk, "csv"]))
    assert csv["Content-Type"].startswith("text/csv") and "00100000-1" in csv.content.decode("utf-8-sig")
    archive = client.get(reverse("annotation:dataset_export", args=[source.pk, "zip"]))
    assert archive["Content-Type"] == "application/zip"


def test_the_import_page_starts_a_job_after_commit(client, curator, django_capture_on_commit_callbacks,
                                                  monkeypatch):
    sent = []
    monkeypatch.setattr("annotation.tasks.run_import.delay", lambda job_id: sent.append(job_id))
    line = {"question_id": "00000000-0", "image_path": "images/a.png", "history": [], "prompt": "描述图片。",
            "ref_answer": "图", "task": "Description", "category": "Perception & Understanding"}
    client.force_login(curator)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(reverse("annotation:import_start"), {
            "dataset": "导入 imported", "jsonl": SimpleUploadedFile("m.jsonl", json.dumps(line).encode())})
    job = ImportJob.objects.get()
    assert len(callbacks) == 1 and sent == [job.pk]
    assert response.url == reverse("annotation:import_job", args=[job.pk]) and job.dataset.name == "导入 imported"
    page = client.get(response.url, headers={"HX-Request": "true"}).content.decode()
    assert 'hx-trigger="every 1s"' in page and "queued" in page


def test_the_import_page_refuses_a_frozen_dataset(client, curator):
    make_dataset(name="frozen", frozen=True)
    client.force_login(curator)
    response = client.post(reverse("annotation:import_start"), {
        "dataset": "frozen", "jsonl": SimpleUploadedFile("m.jsonl", b"{}")})
    assert response.status_code == 400 and "is frozen" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_the_import_pages_are_for_curators(client, researcher):
    client.force_login(researcher)
    assert client.get(reverse("annotation:import")).status_code == 403
    assert client.post(reverse("annotation:import_start"), {}).status_code == 403


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_an_uploaded_import_to_done(client, celery_worker, tmp_path):
    import io
    import zipfile

    from tests.factories import make_user
    from tests.workers import wait_for

    curator = make_user(username="cora", role="curator")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("images/a.png", png_bytes(seed=31))
    lines = [{"question_id": f"00000000-{k}", "image_path": "images/a.png", "history": [], "prompt": f"描述图片{k}",
              "ref_answer": "图", "task": "Description", "category": "Perception & Understanding"} for k in range(3)]
    client.force_login(curator)
    response = client.post(reverse("annotation:import_start"), {
        "dataset": "worker", "jsonl": SimpleUploadedFile("m.jsonl", "\n".join(map(json.dumps, lines)).encode()),
        "images": SimpleUploadedFile("images.zip", archive.getvalue())})
    job = ImportJob.objects.get()
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status in ("done", "failed"), timeout=60, what="the import job")
    job.refresh_from_db()
    assert (job.status, job.imported, job.failed, job.processed) == ("done", 3, 0, 3), job.error
    assert Question.objects.filter(dataset__name="worker").count() == 3
    page = client.get(response.url).content.decode()
    assert "hx-trigger" not in page and "imported 3" in page


def test_curators_change_the_scoring_settings_on_the_dataset_page(client, curator, source):
    source.freeze()  # the settings don't touch the questions: a frozen dataset is the one being scored
    client.force_login(curator)
    page = client.get(reverse("annotation:dataset", args=[source.pk])).content.decode()
    assert 'data-testid="scoring-settings-form"' in page and 'name="annotators_per_response" value="3"' in page
    url = reverse("annotation:dataset_scoring", args=[source.pk])
    response = client.post(url, {"annotators_per_response": "5", "show_peer_scores": "on"})
    assert response.status_code == 302 and response.url == reverse("annotation:dataset", args=[source.pk])
    source.refresh_from_db()
    assert (source.annotators_per_response, source.show_peer_scores, source.frozen) == (5, True, True)
    assert "已保存评分设置" in client.get(response.url).content.decode()
    fragment = client.post(url, {"annotators_per_response": "2"}, headers={"HX-Request": "true"})
    html = fragment.content.decode()
    assert fragment.status_code == 200 and html.lstrip().startswith('<section class="card" id="scoring-settings"')
    assert 'data-testid="scoring-saved"' in html and "<html" not in html
    source.refresh_from_db()
    assert (source.annotators_per_response, source.show_peer_scores) == (2, False)
    assert client.get(url).status_code == 405


@pytest.mark.parametrize("value", ["0", "-1", "", "x", "²", "101"])
def test_it_refuses_scoring_settings_without_at_least_one_annotator(client, curator, source, value):
    client.force_login(curator)
    url = reverse("annotation:dataset_scoring", args=[source.pk])
    page = client.post(url, {"annotators_per_response": value, "show_peer_scores": "on"})
    assert page.status_code == 400 and 'data-testid="scoring-settings-form"' in page.content.decode()
    assert 'class="errorlist' in page.content.decode()
    if value == "0":
        assert "At least one person must score each response." in page.content.decode()
    # htmx swaps no 4xx in: the form comes back with its error as a 200 fragment.
    fragment = client.post(url, {"annotators_per_response": value}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'class="errorlist' in fragment.content.decode()
    source.refresh_from_db()
    assert (source.annotators_per_response, source.show_peer_scores) == (3, False)


def test_only_curators_change_the_scoring_settings(client, researcher, annotator, source):
    url = reverse("annotation:dataset_scoring", args=[source.pk])
    assert "/login/" in client.post(url, {"annotators_per_response": "1"})["Location"]
    for user in (researcher, annotator):
        client.force_login(user)
        assert client.post(url, {"annotators_per_response": "1"}).status_code == 403
    client.force_login(researcher)
    page = client.get(reverse("annotation:dataset", args=[source.pk])).content.decode()
    assert 'data-testid="scoring-settings"' in page and 'data-testid="scoring-settings-form"' not in page
    source.refresh_from_db()
    assert source.annotators_per_response == 3
