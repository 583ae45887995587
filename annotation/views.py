from __future__ import annotations

import tempfile
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evaluation.exchange import attachment
from evaluation.models import CriticScore, Response

from . import alignmmbench, curation, import_jobs, scoring
from .forms import (
    DatasetAddForm,
    DatasetForm,
    ImageEditForm,
    ImportForm,
    LibraryFilterForm,
    QuestionForm,
    ScoringSettingsForm,
    UploadForm,
    tag_names,
)
from .images import ImageRejected, clean_filename, ingest_upload
from .models import Adjudication, Assignment, Dataset, DatasetFrozen, HumanScore, Image, ImportJob, Question
from .roles import ANNOTATOR, CURATOR, RESEARCHER, role_required

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
LIBRARY_PAGE_SIZE = 48
DATASET_PAGE_SIZE = 50


def _is_id(value: str) -> bool:
    """A primary key from a query string or form. (Not str.isdigit() alone: it takes "²", and
    filter(pk="²") raises.)"""
    return value.isascii() and value.isdigit()


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
        curation.image_update(image=image, **form.cleaned_data)
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
            question = curation.question_create(dataset=data["dataset"], image=image, task=data["task"],
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
            curation.question_update(question=question, task=data["task"], text=data["text"],
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
        dataset = curation.dataset_create(by=request.user, **form.cleaned_data)
        return redirect("annotation:dataset", pk=dataset.pk)
    datasets = Dataset.objects.annotate(question_count=Count("questions")).select_related("parent")
    return TemplateResponse(request, "annotation/datasets.html", {"datasets": datasets, "form": form}, status=400)


@require_GET
@role_required(CURATOR, RESEARCHER)
def dataset_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    dataset = get_object_or_404(Dataset.objects.select_related("parent"), pk=pk)
    template = "annotation/dataset.html" + ("#questions" if request.htmx else "")
    return TemplateResponse(request, template, _dataset_context(request, dataset))


def _dataset_context(request: HttpRequest, dataset: Dataset, *,
                     scoring_form: ScoringSettingsForm | None = None) -> dict:
    questions = dataset.questions.select_related("image").order_by("group", "variant", "id")
    task, text = request.GET.get("task", ""), request.GET.get("q", "").strip()
    if task:
        questions = questions.filter(task=task)
    if text:
        questions = questions.search(text)
    page = Paginator(questions, DATASET_PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "dataset": dataset, "page": page, "add_form": DatasetAddForm(), "task": task, "q": text,
        "task_choices": DatasetAddForm().fields["task"].choices,
        "targets": Dataset.objects.filter(frozen=False).exclude(pk=dataset.pk),
        **_scoring_settings_context(dataset, scoring_form),
    }


def _scoring_settings_context(dataset: Dataset, form: ScoringSettingsForm | None = None, *,
                              saved: bool = False) -> dict:
    # The edit window and the rationale rule are the site's, not the dataset's: shown, not edited.
    return {"dataset": dataset, "scoring_form": form or ScoringSettingsForm.of(dataset), "saved": saved,
            "edit_minutes": settings.SCORING_EDIT_WINDOW_MINUTES, "rationale_below": settings.SCORING_RATIONALE_BELOW}


@require_POST
@role_required(CURATOR)
def dataset_scoring(request: HttpRequest, pk: int) -> HttpResponse:
    """Annotators per response and whether they see each other's scores (frozen or not)."""
    dataset = get_object_or_404(Dataset.objects.select_related("parent"), pk=pk)
    form = ScoringSettingsForm(request.POST)
    saved = form.is_valid()
    if saved:
        scoring.dataset_scoring_update(dataset=dataset, **form.cleaned_data)
    if request.htmx:  # the section again; with errors too, as a 200 (htmx swaps no 4xx in)
        context = _scoring_settings_context(dataset, None if saved else form, saved=saved)
        return TemplateResponse(request, "annotation/dataset.html#scoring_settings", context)
    if saved:
        messages.success(request, "已保存评分设置 Scoring settings saved.")
        return redirect("annotation:dataset", pk=dataset.pk)
    return TemplateResponse(request, "annotation/dataset.html", _dataset_context(request, dataset, scoring_form=form),
                            status=400)


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
        result = curation.dataset_add_questions(dataset=dataset, questions=form.selected(), by=request.user)
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
    selected = dataset.questions.filter(pk__in=[v for v in request.POST.getlist("questions") if _is_id(v)])
    if not selected.exists():
        return _refused(request, dataset, "请先选择问题 Select some questions first.")
    try:
        if request.POST.get("action") == "copy":
            target = get_object_or_404(Dataset, pk=request.POST.get("target") or 0)
            result = curation.dataset_add_questions(dataset=target, questions=selected, by=request.user)
            messages.success(request, f"已复制 Copied {result.added} questions to “{target.name}”.")
        else:
            count = curation.dataset_remove_questions(dataset=dataset, questions=selected)
            messages.success(request, f"已移除 Removed {count} questions (a seed takes its rewrites with it).")
    except DatasetFrozen as exc:
        return _refused(request, dataset, exc.messages[0])
    except curation.QuestionsInUse as exc:
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
    copy = curation.dataset_copy_as_version(dataset=dataset, by=request.user)
    messages.success(request, f"新版本 New version “{copy.name}” with {copy.questions.count()} questions.")
    return redirect("annotation:dataset", pk=copy.pk)


@require_GET
@role_required(CURATOR, RESEARCHER)
def dataset_export(request: HttpRequest, pk: int, fmt: str) -> HttpResponse:
    dataset = get_object_or_404(Dataset, pk=pk)
    name = slugify(dataset.name, allow_unicode=True) or f"dataset-{dataset.pk}"
    if fmt == "zip":
        spool = tempfile.TemporaryFile()
        alignmmbench.alignmmbench_export_images(dataset=dataset, out=spool)
        spool.seek(0)
        return FileResponse(spool, as_attachment=True, filename=f"{name}-images.zip", content_type="application/zip")
    response = HttpResponse(content_type="text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl; charset=utf-8")
    attachment(response, f"{name}.{fmt}")
    if fmt == "csv":
        response.write("\ufeff")  # so spreadsheet programs read the Chinese text as UTF-8
        alignmmbench.alignmmbench_export_csv(dataset=dataset, out=response)
    else:
        alignmmbench.alignmmbench_export(dataset=dataset, out=response)
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
    job = import_jobs.import_job_start(dataset=dataset, jsonl_upload=form.cleaned_data["jsonl"],
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
    """Pick a dataset and an order, see your counts, start (or resume) scoring."""
    rows = scoring.datasets_with_work(user=request.user)
    picked = request.GET.get("dataset", "")
    chosen = next((d for d, _ in rows if str(d.pk) == picked), None)
    chosen = chosen or next((d for d, left in rows if left), None) or (rows[0][0] if rows else None)
    order = request.GET.get("order", scoring.Order.BALANCED)
    context = {
        "rows": rows, "dataset": chosen, "order": order if order in scoring.Order.VALUES else scoring.Order.BALANCED,
        "orders": scoring.Order.CHOICES, "counts": scoring.annotator_counts(user=request.user),
        "scored_total": HumanScore.objects.filter(annotator=request.user).count(),
        "resume": scoring.live_assignment(user=request.user, dataset=chosen) if chosen else None,
    }
    return TemplateResponse(request, "annotation/score_home.html", context)


# --- Human scoring workspace -------------------------------------------------------------------
# Blindness rule: the item views never load critic scores or other people's scores; only the
# "done" views do, and only for a response the viewer has already scored themselves.


def _own_assignment(request: HttpRequest, pk: int) -> Assignment:
    """The viewer's own reservation, with their counts (``scoring.counts_of``) and the seed texts
    (``scoring.question_texts``) in the same query."""
    return get_object_or_404(
        scoring.with_seed_texts(Assignment.objects, question="response__question")
        .select_related("response__question__image", "response__question__dataset")
        .annotate(**scoring.annotator_count_annotations(user=request.user)),
        pk=pk, annotator=request.user,
    )


def _own_score(request: HttpRequest, response_pk: int) -> HumanScore:
    """The viewer's own score, with their counts (``scoring.counts_of``) in the same query."""
    return get_object_or_404(
        HumanScore.objects.select_related("response__question__image", "response__question__dataset")
        .annotate(**scoring.annotator_count_annotations(user=request.user)),
        response_id=response_pk, annotator=request.user,
    )


def _workspace(request: HttpRequest, template: str, context: dict, *, push: str | None = None,
               status: int = 200) -> TemplateResponse:
    """The whole page, or for htmx just the #workspace fragment (pushing its URL to the history)."""
    if "counts" not in context:  # (setdefault would run the query even when the view brought its own)
        context["counts"] = scoring.annotator_counts(user=request.user)
    context.setdefault("rationale_below", settings.SCORING_RATIONALE_BELOW)
    if request.htmx:
        template += "#workspace"
    response = TemplateResponse(request, template, context, status=status)
    if request.htmx and push:
        response["HX-Push-Url"] = push
    return response


def _order(request: HttpRequest) -> str:
    order = request.POST.get("order") or request.GET.get("order") or scoring.Order.BALANCED
    return order if order in scoring.Order.VALUES else scoring.Order.BALANCED


def _next_item(request: HttpRequest, dataset_pk: int, *, note: str = "") -> HttpResponse:
    # No queue sync here: score_home and the progress page do it, and "next" stays cheap.
    # The dataset comes with the annotator's live reservation and counts in the same query.
    dataset = get_object_or_404(scoring.datasets_for_annotator(user=request.user), pk=dataset_pk)
    order = _order(request)
    # The assignment comes with the response, question and image the item shows.
    assignment = scoring.assignment_reserve_next(user=request.user, dataset=dataset, order=order)
    counts = scoring.counts_of(dataset)
    if assignment is None:
        context = {"state": "empty", "dataset": dataset, "order": order, "note": note, "counts": counts}
        return _workspace(request, "annotation/score_item.html", context)
    url = reverse("annotation:score_item", args=[assignment.pk]) + f"?order={order}"
    if not request.htmx:
        return redirect(url)
    assignment.response.question.dataset = dataset
    context = {"state": "item", "assignment": assignment, "dataset": dataset, "order": order, "note": note,
               "texts": scoring.question_texts(assignment.response.question, loaded_with=assignment),
               "flags": HumanScore.Flag.choices, "data": {}, "errors": {}, "chosen_flags": [], "counts": counts}
    return _workspace(request, "annotation/score_item.html", context, push=url)


@require_POST
@role_required(ANNOTATOR)
def score_next(request: HttpRequest, dataset_pk: int) -> HttpResponse:
    """Reserve the next response (or resume the live one) and show it."""
    return _next_item(request, dataset_pk)


@require_GET
@role_required(ANNOTATOR)
def score_item(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _own_assignment(request, pk)
    dataset = assignment.response.question.dataset
    if assignment.status == Assignment.Status.SUBMITTED:
        return redirect("annotation:score_done", assignment.response_id)
    state = "item" if assignment.is_live else "lost"
    context = {"state": state, "assignment": assignment, "dataset": dataset, "order": _order(request),
               "texts": scoring.question_texts(assignment.response.question, loaded_with=assignment),
               "flags": HumanScore.Flag.choices, "data": {}, "errors": {}, "counts": scoring.counts_of(assignment),
               "note": "" if state == "item" else "预留已结束 This reservation has ended."}
    return _workspace(request, "annotation/score_item.html", context)


@require_POST
@role_required(ANNOTATOR)
def score_submit(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _own_assignment(request, pk)
    dataset = assignment.response.question.dataset
    data, errors = scoring.clean_score_input(request.POST)
    base = {"assignment": assignment, "dataset": dataset, "order": _order(request), "flags": HumanScore.Flag.choices,
            "counts": scoring.counts_of(assignment)}
    if errors:
        context = {**base, "state": "item", "data": request.POST, "errors": errors,
                   "chosen_flags": request.POST.getlist("flags"),
                   "texts": scoring.question_texts(assignment.response.question, loaded_with=assignment)}
        return _workspace(request, "annotation/score_item.html", context, status=200 if request.htmx else 422)
    try:
        spent = scoring.time_spent(assignment=assignment, claimed=request.POST.get("time_spent_s"))
        human_score = scoring.score_submit(assignment=assignment, data=data, time_spent_s=spent)
    except scoring.ScoringError as exc:
        return _workspace(request, "annotation/score_item.html", {**base, "state": "lost", "note": str(exc)})
    url = reverse("annotation:score_done", args=[assignment.response_id]) + f"?order={base['order']}"
    if not request.htmx:
        return redirect(url)
    # Just submitted: the score is the one we hold (with the response the assignment brought), it
    # has no edit history yet, and the counts are the ones read with the assignment plus this one.
    human_score.response = assignment.response
    counts = {key: value + 1 for key, value in base["counts"].items()}
    return _done(request, human_score, push=url, fresh=True, counts=counts)


@require_POST
@role_required(ANNOTATOR)
def score_skip(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _own_assignment(request, pk)
    scoring.assignment_skip(assignment=assignment)
    return _next_item(request, assignment.response.question.dataset_id, note="已跳过 Skipped.")


def _done(request: HttpRequest, human_score: HumanScore, *, push: str | None = None, errors: dict | None = None,
          refused: str = "", saved: bool = False, fresh: bool = False, counts: dict[str, int] | None = None,
          status: int = 200) -> TemplateResponse:
    context = {
        "state": "done", "mine": human_score, "dataset": human_score.response.question.dataset,
        "sbs": scoring.side_by_side(human_score=human_score), "order": _order(request),
        "revisions": [] if fresh else human_score.revisions.select_related("changed_by"),
        "can_edit": scoring.can_edit(human_score), "counts": counts or scoring.counts_of(human_score),
        "flags": HumanScore.Flag.choices, "errors": errors or {}, "refused": refused, "saved": saved,
        "edit_minutes": settings.SCORING_EDIT_WINDOW_MINUTES,
    }
    return _workspace(request, "annotation/score_done.html", context, push=push, status=status)


@require_GET
@role_required(ANNOTATOR)
def score_done(request: HttpRequest, response_pk: int) -> HttpResponse:
    """Side by side: only reachable for a response the annotator has scored."""
    return _done(request, _own_score(request, response_pk))


@require_POST
@role_required(ANNOTATOR)
def score_edit(request: HttpRequest, response_pk: int) -> HttpResponse:
    human_score = _own_score(request, response_pk)
    # Past the window the page has no edit form, so form errors would show nowhere: the refusal
    # comes first and stands on its own.
    refused = scoring.edit_refusal(human_score, by=request.user)
    data, errors = ({}, {}) if refused else scoring.clean_score_input(request.POST)
    if not refused and not errors:
        try:
            scoring.score_edit(human_score=human_score, data=data, by=request.user)
        except scoring.ScoringError as exc:  # the window closed in between
            refused = str(exc)
    if not refused and not errors and not request.htmx:
        messages.success(request, "已保存修改 Change saved.")
        return redirect("annotation:score_done", response_pk)
    # (htmx swaps only a 2xx answer in: the refusal comes as a 200 fragment there)
    status = 409 if refused and not request.htmx else 200
    return _done(request, _own_score(request, response_pk), errors=errors, refused=refused,
                 saved=not (errors or refused), status=status)


@require_GET
@role_required(ANNOTATOR)
def score_mine(request: HttpRequest) -> TemplateResponse:
    """The annotator's own scores, newest first, with links back to each side by side."""
    scores = (HumanScore.objects.filter(annotator=request.user)
              .select_related("response__question__dataset").order_by("-created_at", "-id"))
    page = Paginator(scores, 50).get_page(request.GET.get("page"))
    template = "annotation/score_mine.html"
    if request.htmx:
        template += "#rows"
    return TemplateResponse(request, template, {"page": page, "counts": scoring.annotator_counts(user=request.user)})


def _picked_dataset(request: HttpRequest) -> Dataset | None:
    datasets = Dataset.objects.all()
    picked = request.GET.get("dataset", "")
    return (datasets.filter(pk=picked).first() if _is_id(picked) else None) or datasets.first()


@require_GET
@role_required(RESEARCHER)
def score_progress(request: HttpRequest) -> TemplateResponse:
    dataset = _picked_dataset(request)
    context = {"datasets": Dataset.objects.all(), "dataset": dataset}
    if dataset is not None:
        scoring.queue_sync_if_stale(dataset)
        context["progress"] = scoring.dataset_progress(dataset)
    template = "annotation/score_progress.html"
    if request.htmx:
        template += "#progress"
    return TemplateResponse(request, template, context)


@require_GET
@role_required(RESEARCHER)
def adjudication_queue(request: HttpRequest) -> TemplateResponse:
    dataset = _picked_dataset(request)
    resolved = request.GET.get("resolved") == "1"
    page, rows = None, []
    if dataset is not None:
        page = Paginator(scoring.disagreements(dataset=dataset, resolved=resolved), 50).get_page(request.GET.get("page"))
        responses = Response.objects.select_related("question", "run__endpoint").in_bulk(
            [row["response_id"] for row in page])
        rows = [{**row, "response": responses[row["response_id"]]} for row in page]
    context = {"datasets": Dataset.objects.all(), "dataset": dataset, "resolved": resolved, "page": page, "rows": rows,
               "gap": settings.SCORING_ADJUDICATION_GAP}
    template = "annotation/adjudication_queue.html"
    if request.htmx:
        template += "#rows"
    return TemplateResponse(request, template, context)


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def adjudication_detail(request: HttpRequest, response_pk: int) -> HttpResponse:
    """Every human score (with its edit history), every critic score, and the resolution."""
    responses = scoring.with_seed_texts(Response.objects, question="question")
    response = get_object_or_404(responses.select_related("question__image", "question__dataset", "run__endpoint"),
                                 pk=response_pk)
    errors: dict[str, str] = {}
    if request.method == "POST":
        note = request.POST.get("note", "").strip()
        raw = request.POST.get("score", "").strip()
        score = scoring.parse_score(raw)
        if not note:
            errors["note"] = "请写下结论 Write a resolution note."
        if raw and score is None:
            errors["score"] = "分数 1-10 Score must be 1 to 10."
        if not errors:
            scoring.adjudication_resolve(response=response, note=note, score=score, by=request.user)
            if not request.htmx:
                messages.success(request, "已记录裁定 Resolution saved.")
                return redirect("annotation:adjudication_detail", response_pk)
    context = {
        "response": response, "question": response.question, "errors": errors, "post": request.POST,
        "texts": scoring.question_texts(response.question, loaded_with=response),
        "human_scores": HumanScore.objects.filter(response=response).select_related("annotator")
        .prefetch_related("revisions__changed_by").order_by("created_at"),
        "critic_scores": CriticScore.objects.filter(response=response).select_related("critic_run__critic"),
        "adjudication": Adjudication.objects.filter(response=response).select_related("resolved_by").first(),
    }
    template = "annotation/adjudication_detail.html"
    if request.htmx:
        template += "#resolution"
    return TemplateResponse(request, template, context)


# --- rewrite review -------------------------------------------------------------------------------------


def _review_seed(dataset: Dataset, seed_pk: str | None) -> Question | None:
    seeds = Question.objects.filter(dataset=dataset, variant=0).select_related("image")
    if seed_pk and _is_id(seed_pk):
        return seeds.filter(pk=seed_pk).first()
    pending_groups = Question.objects.filter(dataset=dataset).proposed().values("group")
    return seeds.filter(group__in=pending_groups).order_by("group").first()


def _proposal_rows(seed: Question) -> list[dict]:
    from .drift import highlight

    rows = []
    for proposal in Question.objects.in_group(seed).filter(variant__isnull=True).order_by("status", "id"):
        tokens = [flag["token"] for flag in proposal.drift]
        rows.append({"q": proposal, "segments": highlight(proposal.text, tokens)})
    return rows


@require_GET
@role_required(CURATOR)
def rewrite_review(request: HttpRequest, pk: int) -> TemplateResponse:
    """One seed beside its proposed rewrites; accept, edit-then-accept or reject by keyboard."""
    dataset = get_object_or_404(Dataset, pk=pk)
    from .drift import highlight

    seed = _review_seed(dataset, request.GET.get("seed"))
    rows = _proposal_rows(seed) if seed else []
    # The seed's words that some proposal dropped or changed, marked once on the seed itself.
    flagged = [flag["token"] for row in rows if row["q"].status == Question.Status.PROPOSED for flag in row["q"].drift]
    context = {"dataset": dataset, "seed": seed, "rows": rows,
               "seed_segments": highlight(seed.text, flagged) if seed else [],
               "variants": Question.objects.in_group(seed).numbered().exclude(pk=seed.pk) if seed else [],
               "pending": Question.objects.filter(dataset=dataset).proposed().count()}
    return TemplateResponse(request, "annotation/review.html", context)


def _review_row(request: HttpRequest, proposal: Question) -> HttpResponse:
    if request.htmx:
        from .drift import highlight

        tokens = [flag["token"] for flag in proposal.drift]
        row = {"q": proposal, "segments": highlight(proposal.text, tokens)}
        return TemplateResponse(request, "annotation/review.html#row", {"row": row})
    return redirect(f"{reverse('annotation:rewrite_review', args=[proposal.dataset_id])}?seed="
                    f"{proposal.seed.pk}")


@require_POST
@role_required(CURATOR)
def rewrite_accept(request: HttpRequest, pk: int) -> HttpResponse:
    proposal = get_object_or_404(Question.objects.select_related("dataset"), pk=pk, status=Question.Status.PROPOSED)
    text = request.POST.get("text")
    try:
        proposal.accept_rewrite(by=request.user, text=text if text is not None and text.strip() else None)
    except DatasetFrozen as exc:
        return HttpResponse(exc.messages[0], status=409)
    except ValidationError as exc:
        return HttpResponse(" ".join(exc.messages), status=400)
    return _review_row(request, proposal)


@require_POST
@role_required(CURATOR)
def rewrite_reject(request: HttpRequest, pk: int) -> HttpResponse:
    proposal = get_object_or_404(Question.objects.select_related("dataset"), pk=pk, status=Question.Status.PROPOSED)
    try:
        proposal.reject_rewrite(by=request.user)
    except DatasetFrozen as exc:
        return HttpResponse(exc.messages[0], status=409)
    return _review_row(request, proposal)


@require_POST
@role_required(CURATOR)
def rewrite_accept_unflagged(request: HttpRequest, pk: int) -> HttpResponse:
    seed = get_object_or_404(Question, pk=pk, variant=0)
    accepted = 0
    try:
        for proposal in Question.objects.in_group(seed).proposed().order_by("id"):
            if not proposal.drift:
                proposal.accept_rewrite(by=request.user)
                accepted += 1
    except DatasetFrozen as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(request, f"Accepted {accepted} unflagged proposals.")
    return redirect(f"{reverse('annotation:rewrite_review', args=[seed.dataset_id])}?seed={seed.pk}")
