from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from evaluation.models import CriticScore, Response

from . import scoring
from .models import Adjudication, Assignment, Dataset, HumanScore, Image
from .roles import ANNOTATOR, CURATOR, RESEARCHER, role_required

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


@require_GET
@role_required(CURATOR, RESEARCHER)
def image_library(request: HttpRequest) -> TemplateResponse:
    images = Image.objects.annotate(question_count=Count("questions")).order_by("-created_at", "-id")
    page = Paginator(images, 48).get_page(request.GET.get("page"))
    template = "annotation/library.html"
    if request.htmx:
        template += "#grid"
    return TemplateResponse(request, template, {"page": page})


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
    return get_object_or_404(
        Assignment.objects.select_related("response__question__image", "response__question__dataset",
                                          "response__run__endpoint"),
        pk=pk, annotator=request.user,
    )


def _own_score(request: HttpRequest, response_pk: int) -> HumanScore:
    return get_object_or_404(
        HumanScore.objects.select_related("response__question__image", "response__question__dataset",
                                          "response__run__endpoint"),
        response_id=response_pk, annotator=request.user,
    )


def _workspace(request: HttpRequest, template: str, context: dict, *, push: str | None = None,
               status: int = 200) -> TemplateResponse:
    """The whole page, or for htmx just the #workspace fragment (pushing its URL to the history)."""
    context.setdefault("counts", scoring.annotator_counts(user=request.user))
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


def _next_item(request: HttpRequest, dataset: Dataset, *, note: str = "") -> HttpResponse:
    # No queue sync here: score_home and the progress page do it, and "next" stays cheap.
    order = _order(request)
    assignment = scoring.assignment_reserve_next(user=request.user, dataset=dataset, order=order)
    if assignment is None:
        context = {"state": "empty", "dataset": dataset, "order": order, "note": note}
        return _workspace(request, "annotation/score_item.html", context)
    url = reverse("annotation:score_item", args=[assignment.pk]) + f"?order={order}"
    if not request.htmx:
        return redirect(url)
    assignment = _own_assignment(request, assignment.pk)
    context = {"state": "item", "assignment": assignment, "dataset": dataset, "order": order, "note": note,
               "flags": HumanScore.Flag.choices, "data": {}, "errors": {}, "chosen_flags": []}
    return _workspace(request, "annotation/score_item.html", context, push=url)


@require_POST
@role_required(ANNOTATOR)
def score_next(request: HttpRequest, dataset_pk: int) -> HttpResponse:
    """Reserve the next response (or resume the live one) and show it."""
    return _next_item(request, get_object_or_404(Dataset, pk=dataset_pk))


@require_GET
@role_required(ANNOTATOR)
def score_item(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _own_assignment(request, pk)
    dataset = assignment.response.question.dataset
    if assignment.status == Assignment.Status.SUBMITTED:
        return redirect("annotation:score_done", assignment.response_id)
    state = "item" if assignment.is_live else "lost"
    context = {"state": state, "assignment": assignment, "dataset": dataset, "order": _order(request),
               "flags": HumanScore.Flag.choices, "data": {}, "errors": {},
               "note": "" if state == "item" else "预留已结束 This reservation has ended."}
    return _workspace(request, "annotation/score_item.html", context)


@require_POST
@role_required(ANNOTATOR)
def score_submit(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _own_assignment(request, pk)
    dataset = assignment.response.question.dataset
    data, errors = scoring.clean_score_input(request.POST)
    base = {"assignment": assignment, "dataset": dataset, "order": _order(request), "flags": HumanScore.Flag.choices}
    if errors:
        context = {**base, "state": "item", "data": request.POST, "errors": errors,
                   "chosen_flags": request.POST.getlist("flags")}
        return _workspace(request, "annotation/score_item.html", context, status=200 if request.htmx else 422)
    try:
        spent = scoring.time_spent(assignment=assignment, claimed=request.POST.get("time_spent_s"))
        scoring.score_submit(assignment=assignment, data=data, time_spent_s=spent)
    except scoring.ScoringError as exc:
        return _workspace(request, "annotation/score_item.html", {**base, "state": "lost", "note": str(exc)})
    url = reverse("annotation:score_done", args=[assignment.response_id]) + f"?order={base['order']}"
    if not request.htmx:
        return redirect(url)
    return _done(request, _own_score(request, assignment.response_id), push=url)


@require_POST
@role_required(ANNOTATOR)
def score_skip(request: HttpRequest, pk: int) -> HttpResponse:
    assignment = _own_assignment(request, pk)
    scoring.assignment_skip(assignment=assignment)
    return _next_item(request, assignment.response.question.dataset, note="已跳过 Skipped.")


def _done(request: HttpRequest, human_score: HumanScore, *, push: str | None = None, errors: dict | None = None,
          saved: bool = False) -> TemplateResponse:
    context = {
        "state": "done", "mine": human_score, "dataset": human_score.response.question.dataset,
        "sbs": scoring.side_by_side(human_score=human_score), "order": _order(request),
        "revisions": human_score.revisions.select_related("changed_by"), "can_edit": scoring.can_edit(human_score),
        "flags": HumanScore.Flag.choices, "errors": errors or {}, "saved": saved,
        "edit_minutes": settings.SCORING_EDIT_WINDOW_MINUTES,
    }
    return _workspace(request, "annotation/score_done.html", context, push=push)


@require_GET
@role_required(ANNOTATOR)
def score_done(request: HttpRequest, response_pk: int) -> HttpResponse:
    """Side by side: only reachable for a response the annotator has scored."""
    return _done(request, _own_score(request, response_pk))


@require_POST
@role_required(ANNOTATOR)
def score_edit(request: HttpRequest, response_pk: int) -> HttpResponse:
    human_score = _own_score(request, response_pk)
    data, errors = scoring.clean_score_input(request.POST)
    if not errors:
        try:
            scoring.score_edit(human_score=human_score, data=data, by=request.user)
        except scoring.ScoringError as exc:
            errors = {"score": str(exc)}
    if not errors and not request.htmx:
        messages.success(request, "已保存修改 Change saved.")
        return redirect("annotation:score_done", response_pk)
    return _done(request, _own_score(request, response_pk), errors=errors, saved=not errors)


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
    return (datasets.filter(pk=picked).first() if picked.isdigit() else None) or datasets.first()


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
    response = get_object_or_404(Response.objects.select_related("question__image", "question__dataset",
                                                                 "run__endpoint"), pk=response_pk)
    errors: dict[str, str] = {}
    if request.method == "POST":
        note = request.POST.get("note", "").strip()
        raw = request.POST.get("score", "").strip()
        score = int(raw) if raw.isdigit() else None
        if not note:
            errors["note"] = "请写下结论 Write a resolution note."
        if raw and (score is None or not 1 <= score <= 10):
            errors["score"] = "分数 1-10 Score must be 1 to 10."
        if not errors:
            scoring.adjudication_resolve(response=response, note=note, score=score, by=request.user)
            if not request.htmx:
                messages.success(request, "已记录裁定 Resolution saved.")
                return redirect("annotation:adjudication_detail", response_pk)
    context = {
        "response": response, "question": response.question, "errors": errors, "post": request.POST,
        "human_scores": HumanScore.objects.filter(response=response).select_related("annotator")
        .prefetch_related("revisions__changed_by").order_by("created_at"),
        "critic_scores": CriticScore.objects.filter(response=response).select_related("critic_run__critic"),
        "adjudication": Adjudication.objects.filter(response=response).select_related("resolved_by").first(),
    }
    template = "annotation/adjudication_detail.html"
    if request.htmx:
        template += "#resolution"
    return TemplateResponse(request, template, context)
