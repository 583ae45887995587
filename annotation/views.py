from __future__ import annotations

import tempfile
from dataclasses import dataclass

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from . import services
from .forms import (
    DatasetAddForm,
    DatasetForm,
    ImageEditForm,
    ImportForm,
    LibraryFilterForm,
    QuestionForm,
    UploadForm,
    tag_names,
)
from .images import ImageRejected, clean_filename, ingest_upload
from .models import Dataset, DatasetFrozen, HumanScore, Image, ImportJob, Question
from .roles import ANNOTATOR, CURATOR, RESEARCHER, role_required

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
LIBRARY_PAGE_SIZE = 48
DATASET_PAGE_SIZE = 50


# ---------------------------------------------------------------------------------------------- images

@require_GET
@role_required(CURATOR, RESEARCHER)
def image_library(request: HttpRequest) -> TemplateResponse:
    form = LibraryFilterForm(request.GET or None, tags=tag_names(),
                             datasets=list(Dataset.objects.values_list("pk", "name")))
    images = form.filter(Image.objects.all()).with_question_count().prefetch_related("tags").order_by("-id")
    page = Paginator(images, LIBRARY_PAGE_SIZE).get_page(request.GET.get("page"))
    template = "annotation/library.html"
    if request.htmx:
        template += "#grid"
    return TemplateResponse(request, template, {"page": page, "form": form})


@dataclass
class UploadResult:
    name: str
    status: str  # created / duplicate / rejected
    message: str
    image: Image | None = None


def _upload_one(upload, *, user, options: dict) -> UploadResult:
    name = clean_filename(upload.name)
    try:
        result = ingest_upload(upload, user=user, source=options.get("source", ""),
                               licence=options.get("licence", ""), tags=options.get("tags", []))
    except ImageRejected as exc:
        return UploadResult(name, "rejected", str(exc))
    if result.created:
        return UploadResult(name, "created", "已添加 Added to the library.", result.image)
    return UploadResult(name, "duplicate", "已在图片库中 Already in the library.", result.image)


@require_GET
@role_required(CURATOR)
def upload_page(request: HttpRequest) -> TemplateResponse:
    return TemplateResponse(request, "annotation/upload.html", {"form": UploadForm(), "results": []})


@require_POST
@role_required(CURATOR)
def upload_images(request: HttpRequest) -> TemplateResponse:
    """One file (from upload.js, one request per file) or many (the plain form): a result row each."""
    form = UploadForm(request.POST)
    files = request.FILES.getlist("files")
    results = []
    if form.is_valid():
        results = [_upload_one(upload, user=request.user, options=form.cleaned_data) for upload in files]
    if not files:
        results = [UploadResult("—", "rejected", "请选择图片 Choose at least one image file.")]
    template = "annotation/upload.html"
    if request.htmx:
        template += "#rows"
    return TemplateResponse(request, template, {"form": form, "results": results})


@require_GET
@role_required(CURATOR, RESEARCHER)
def image_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    image = get_object_or_404(Image.objects.prefetch_related("tags"), pk=pk)
    edit_form = ImageEditForm(initial={"source": image.source, "licence": image.licence,
                                       "tags": ", ".join(t.name for t in image.tags.all())})
    return TemplateResponse(request, "annotation/image.html", _image_context(image, edit_form=edit_form))


def _image_context(image: Image, *, edit_form: ImageEditForm | None = None,
                   question_form: QuestionForm | None = None) -> dict:
    questions = list(image.questions.select_related("dataset").order_by("dataset__name", "group", "variant", "id"))
    return {
        "image": image,
        "edit_form": edit_form or ImageEditForm(),
        "question_form": question_form or QuestionForm(),
        "groups": _grouped(questions),
    }


def _grouped(questions: list[Question]) -> list[tuple[Question, list[Question]]]:
    """Seeds with their rewrites listed under them (questions arrive sorted by dataset and group)."""
    groups: dict[tuple[int, str], list[Question]] = {}
    for question in questions:
        groups.setdefault((question.dataset_id, question.group), []).append(question)
    return [(members[0], members[1:]) for members in groups.values()]


@require_POST
@role_required(CURATOR)
def image_edit(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(Image, pk=pk)
    form = ImageEditForm(request.POST)
    if form.is_valid():
        services.image_update(image=image, **form.cleaned_data)
        if not request.htmx:
            messages.success(request, "已保存 Saved.")
            return redirect("annotation:image", pk=image.pk)
    template = "annotation/image.html" + ("#meta" if request.htmx else "")
    return TemplateResponse(request, template, _image_context(image, edit_form=form),
                            status=200 if form.is_valid() else 400)


@require_GET
@role_required(CURATOR, RESEARCHER, ANNOTATOR)
def image_file(request: HttpRequest, pk: int) -> FileResponse:
    image = get_object_or_404(Image, pk=pk)
    response = FileResponse(image.file.open("rb"), content_type=CONTENT_TYPES[image.format])
    # Content-addressed files never change, so browsers may keep them.
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


@require_GET
@role_required(CURATOR, RESEARCHER, ANNOTATOR)
def image_thumbnail(request: HttpRequest, pk: int) -> FileResponse:
    image = get_object_or_404(Image, pk=pk)
    thumbnail = image.ensure_thumbnail()
    response = FileResponse(thumbnail.open("rb"), content_type="image/webp")
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    return response


# ---------------------------------------------------------------------------------------------- questions

@require_POST
@role_required(CURATOR)
def question_new(request: HttpRequest, pk: int) -> HttpResponse:
    image = get_object_or_404(Image, pk=pk)
    form = QuestionForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            question = services.question_create(dataset=data["dataset"], image=image, task=data["task"],
                                                text=data["text"], reference=data["reference"],
                                                history=form.history, by=request.user)
        except DatasetFrozen as exc:
            form.add_error("dataset", exc.messages[0])
        else:
            messages.success(request, f"已添加问题 Question {question.question_id} added.")
            return redirect("annotation:question", pk=question.pk)
    return TemplateResponse(request, "annotation/image.html", _image_context(image, question_form=form), status=400)


def _question_page(request: HttpRequest, question: Question, form: QuestionForm, status: int = 200):
    rewrites = list(question.rewrites()) if question.is_seed else []
    seed = question if question.is_seed else Question.objects.filter(
        dataset_id=question.dataset_id, group=question.group, variant=0).first()
    return TemplateResponse(request, "annotation/question.html",
                            {"question": question, "form": form, "rewrites": rewrites, "seed": seed},
                            status=status)


@require_GET
@role_required(CURATOR, RESEARCHER)
def question_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    question = get_object_or_404(Question.objects.select_related("dataset", "image"), pk=pk)
    form = QuestionForm(with_dataset=False, question=question, initial={
        "task": question.task, "text": question.text, "reference": question.reference_answer})
    return _question_page(request, question, form)


@require_POST
@role_required(CURATOR)
def question_edit(request: HttpRequest, pk: int) -> HttpResponse:
    question = get_object_or_404(Question.objects.select_related("dataset", "image"), pk=pk)
    form = QuestionForm(request.POST, with_dataset=False, question=question, initial={
        "task": question.task, "reference": question.reference_answer})
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.question_update(question=question, task=data["task"], text=data["text"],
                                     reference=data["reference"], history=form.history)
        except DatasetFrozen as exc:
            form.add_error(None, exc.messages[0])
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, "已保存 Saved.")
            return redirect("annotation:question", pk=question.pk)
    return _question_page(request, question, form, status=400)


# ---------------------------------------------------------------------------------------------- datasets

@require_GET
@role_required(CURATOR, RESEARCHER)
def dataset_list(request: HttpRequest) -> TemplateResponse:
    datasets = Dataset.objects.annotate(question_count=Count("questions")).select_related("parent")
    return TemplateResponse(request, "annotation/datasets.html", {"datasets": datasets, "form": DatasetForm()})


@require_POST
@role_required(CURATOR)
def dataset_create(request: HttpRequest) -> HttpResponse:
    form = DatasetForm(request.POST)
    if form.is_valid():
        dataset = services.dataset_create(by=request.user, **form.cleaned_data)
        return redirect("annotation:dataset", pk=dataset.pk)
    datasets = Dataset.objects.annotate(question_count=Count("questions")).select_related("parent")
    return TemplateResponse(request, "annotation/datasets.html", {"datasets": datasets, "form": form}, status=400)


@require_GET
@role_required(CURATOR, RESEARCHER)
def dataset_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    dataset = get_object_or_404(Dataset.objects.select_related("parent"), pk=pk)
    questions = dataset.questions.select_related("image").order_by("group", "variant", "id")
    task, text = request.GET.get("task", ""), request.GET.get("q", "").strip()
    if task:
        questions = questions.filter(task=task)
    if text:
        questions = questions.search(text)
    page = Paginator(questions, DATASET_PAGE_SIZE).get_page(request.GET.get("page"))
    template = "annotation/dataset.html" + ("#questions" if request.htmx else "")
    return TemplateResponse(request, template, {
        "dataset": dataset, "page": page, "add_form": DatasetAddForm(), "task": task, "q": text,
        "task_choices": DatasetAddForm().fields["task"].choices,
        "targets": Dataset.objects.filter(frozen=False).exclude(pk=dataset.pk),
    })


def _refused(request: HttpRequest, dataset: Dataset, message: str) -> HttpResponse:
    messages.error(request, message)
    return redirect("annotation:dataset", pk=dataset.pk)


@require_POST
@role_required(CURATOR)
def dataset_add(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=pk)
    form = DatasetAddForm(request.POST)
    if not form.is_valid():
        return _refused(request, dataset, " ".join(e for errors in form.errors.values() for e in errors))
    try:
        result = services.dataset_add_questions(dataset=dataset, questions=form.selected(), by=request.user)
    except DatasetFrozen as exc:
        return _refused(request, dataset, exc.messages[0])
    messages.success(request, f"已添加 Added {result.added} questions ({result.already} already there, "
                              f"{result.renumbered} groups renumbered).")
    return redirect("annotation:dataset", pk=dataset.pk)


@require_POST
@role_required(CURATOR)
def dataset_selection(request: HttpRequest, pk: int) -> HttpResponse:
    """The selected questions of this dataset: remove them, or copy them into another dataset."""
    dataset = get_object_or_404(Dataset, pk=pk)
    selected = dataset.questions.filter(pk__in=[v for v in request.POST.getlist("questions") if v.isdigit()])
    if not selected.exists():
        return _refused(request, dataset, "请先选择问题 Select some questions first.")
    try:
        if request.POST.get("action") == "copy":
            target = get_object_or_404(Dataset, pk=request.POST.get("target") or 0)
            result = services.dataset_add_questions(dataset=target, questions=selected, by=request.user)
            messages.success(request, f"已复制 Copied {result.added} questions to “{target.name}”.")
        else:
            count = services.dataset_remove_questions(dataset=dataset, questions=selected)
            messages.success(request, f"已移除 Removed {count} questions (a seed takes its rewrites with it).")
    except DatasetFrozen as exc:
        return _refused(request, dataset, exc.messages[0])
    except services.QuestionsInUse as exc:
        return _refused(request, dataset, str(exc))
    return redirect("annotation:dataset", pk=dataset.pk)


@require_POST
@role_required(CURATOR)
def dataset_freeze(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=pk)
    dataset.freeze()
    messages.success(request, f"已冻结 “{dataset.name}” is frozen: its questions can no longer change.")
    return redirect("annotation:dataset", pk=dataset.pk)


@require_POST
@role_required(CURATOR)
def dataset_copy(request: HttpRequest, pk: int) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=pk)
    copy = services.dataset_copy_as_version(dataset=dataset, by=request.user)
    messages.success(request, f"新版本 New version “{copy.name}” with {copy.questions.count()} questions.")
    return redirect("annotation:dataset", pk=copy.pk)


@require_GET
@role_required(CURATOR, RESEARCHER)
def dataset_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=pk)
    name = slugify(dataset.name, allow_unicode=True) or f"dataset-{dataset.pk}"
    if fmt == "zip":
        spool = tempfile.TemporaryFile()
        services.alignmmbench_export_images(dataset=dataset, out=spool)
        spool.seek(0)
        return FileResponse(spool, as_attachment=True, filename=f"{name}-images.zip", content_type="application/zip")
    response = HttpResponse(content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    if fmt == "csv":
        response.write("\ufeff")  # so spreadsheet programs read the Chinese text as UTF-8
        services.alignmmbench_export_csv(dataset=dataset, out=response)
    else:
        services.alignmmbench_export(dataset=dataset, out=response)
    return response


# ---------------------------------------------------------------------------------------------- import

@require_GET
@role_required(CURATOR)
def import_page(request: HttpRequest) -> TemplateResponse:
    jobs = ImportJob.objects.select_related("dataset")[:10]
    return TemplateResponse(request, "annotation/import.html", {"form": ImportForm(), "jobs": jobs})


@require_POST
@role_required(CURATOR)
def import_start(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        jobs = ImportJob.objects.select_related("dataset")[:10]
        return TemplateResponse(request, "annotation/import.html", {"form": form, "jobs": jobs}, status=400)
    dataset, _ = Dataset.objects.get_or_create(name=form.cleaned_data["dataset"],
                                               defaults={"created_by": request.user})
    job = services.import_job_start(dataset=dataset, jsonl_upload=form.cleaned_data["jsonl"],
                                    images_upload=form.cleaned_data["images"], user=request.user)
    return redirect("annotation:import_job", pk=job.pk)


@require_GET
@role_required(CURATOR)
def import_job(request: HttpRequest, pk: int) -> TemplateResponse:
    job = get_object_or_404(ImportJob.objects.select_related("dataset"), pk=pk)
    template = "annotation/import_job.html" + ("#progress" if request.htmx else "")
    return TemplateResponse(request, template, {"job": job, "running": job.status in ("queued", "running")})


# ---------------------------------------------------------------------------------------------- scoring

@require_GET
@role_required(ANNOTATOR)
def score_home(request: HttpRequest) -> HttpResponse:
    mine = HumanScore.objects.filter(annotator=request.user)
    return TemplateResponse(request, "annotation/score_home.html", {"scored_total": mine.count()})
