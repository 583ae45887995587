from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST

from annotation.roles import RESEARCHER, role_required, staff_required

from . import services
from .models import CriticRun, InferenceRun, Ping, Worker


@require_GET
@role_required(RESEARCHER)
def run_list(request: HttpRequest) -> TemplateResponse:
    runs = InferenceRun.objects.select_related("endpoint", "dataset").order_by("-created_at")[:100]
    critic_runs = CriticRun.objects.select_related("critic").order_by("-created_at")[:100]
    return TemplateResponse(request, "evaluation/runs.html", {"runs": runs, "critic_runs": critic_runs})


def _database_status() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "detail": f"{connection.vendor} · {settings.DATABASES['default']['NAME']}"}
    except Exception as exc:  # the page exists to say what is broken, so it must not break itself
        return {"ok": False, "detail": str(exc)}


@require_GET
@staff_required
def status(request: HttpRequest) -> TemplateResponse:
    context = {
        "database": _database_status(),
        "broker": services.broker_status(),
        "workers": Worker.objects.all()[:50],
        "pings": Ping.objects.all()[:5],
        "stale_seconds": settings.WORKER_STALE_SECONDS,
        "active_runs": InferenceRun.objects.active().count() + CriticRun.objects.active().count(),
    }
    template = "evaluation/status.html"
    if request.htmx:
        template += "#panels"
    return TemplateResponse(request, template, context)


@require_POST
@staff_required
def status_ping(request: HttpRequest) -> HttpResponse:
    queue = "gpu" if request.POST.get("queue") == "gpu" else "default"
    ping = services.ping_create(queue=queue)
    if request.htmx:
        return TemplateResponse(request, "evaluation/status.html#ping", {"ping": ping})
    return redirect("evaluation:status")


@require_GET
@staff_required
def status_ping_result(request: HttpRequest, pk: int) -> TemplateResponse:
    ping = get_object_or_404(Ping, pk=pk)
    return TemplateResponse(request, "evaluation/status.html#ping", {"ping": ping})
