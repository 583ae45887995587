from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Count
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from .models import HumanScore, Image
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
    mine = HumanScore.objects.filter(annotator=request.user)
    return TemplateResponse(request, "annotation/score_home.html", {"scored_total": mine.count()})
