from __future__ import annotations

import io

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.roles import RESEARCHER, role_required, staff_required
from annotation.tasks_catalog import Task

from . import services
from .forms import EndpointForm, InferenceRunForm, ResponsesImportForm
from .models import CriticRun, EndpointCheck, InferenceRun, ModelEndpoint, Ping, Response, Worker


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


# --- endpoints ------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def endpoints(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save(commit=False)
        endpoint.created_by = request.user
        endpoint.save()
        messages.success(request, f"Endpoint {endpoint.name} added.")
        return redirect("evaluation:endpoint", pk=endpoint.pk)
    rows = ModelEndpoint.objects.order_by("role", "name")
    return TemplateResponse(request, "evaluation/endpoints.html", {"endpoints": rows, "form": form},
                            status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def endpoint(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(ModelEndpoint, pk=pk)
    form = EndpointForm(request.POST or None, instance=row)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"Endpoint {row.name} saved; workers will reload it.")
        return redirect("evaluation:endpoint", pk=row.pk)
    context = {"endpoint": row, "form": form, "check": row.checks.first()}
    return TemplateResponse(request, "evaluation/endpoint.html", context, status=400 if form.errors else 200)


@require_POST
@role_required(RESEARCHER)
def endpoint_check(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(ModelEndpoint, pk=pk)
    check = services.endpoint_check_create(endpoint=row)
    if request.htmx:
        return TemplateResponse(request, "evaluation/endpoint.html#check", {"endpoint": row, "check": check})
    return redirect("evaluation:endpoint", pk=row.pk)


@require_GET
@role_required(RESEARCHER)
def endpoint_check_result(request: HttpRequest, pk: int, check_pk: int) -> TemplateResponse:
    check = get_object_or_404(EndpointCheck.objects.select_related("endpoint"), pk=check_pk, endpoint_id=pk)
    return TemplateResponse(request, "evaluation/endpoint.html#check", {"endpoint": check.endpoint, "check": check})


# --- inference runs -------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def run_create(request: HttpRequest) -> HttpResponse:
    form = InferenceRunForm(request.POST or None, initial={"endpoint": request.GET.get("endpoint")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        run = services.inference_run_create(endpoint=data["endpoint"], dataset=data["dataset"], tasks=data["tasks"],
                                            variants=data["variants"], by=request.user)
        if run.total == 0:
            messages.warning(request, "No accepted questions match these filters: the run has nothing to do.")
        return redirect("evaluation:run", pk=run.pk)
    return TemplateResponse(request, "evaluation/run_new.html", {"form": form}, status=400 if form.errors else 200)


def _answers(request: HttpRequest, run: InferenceRun):
    answers = Response.objects.filter(run=run).select_related("question__image").order_by("question__group",
                                                                                           "question__variant")
    task = request.GET.get("task", "")
    status = request.GET.get("status", "")
    if task:
        answers = answers.filter(question__task=task)
    if status == "failed":
        answers = answers.exclude(error="")
    elif status == "ok":
        answers = answers.filter(error="")
    return Paginator(answers, 25).get_page(request.GET.get("page")), {"task": task, "status": status}


@require_GET
@role_required(RESEARCHER)
def run_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    run = get_object_or_404(InferenceRun.objects.select_related("endpoint", "dataset"), pk=pk)
    page, filters = _answers(request, run)
    context = {"run": run, "page": page, "filters": filters, "tasks": Task.choices}
    template = "evaluation/run.html"
    if request.htmx:
        template += "#answers" if request.htmx.target == "answers" else "#progress"
    return TemplateResponse(request, template, context)


def _after_action(request: HttpRequest, run: InferenceRun) -> HttpResponse:
    if request.htmx:
        run.refresh_from_db()
        return TemplateResponse(request, "evaluation/run.html#progress", {"run": run})
    return redirect("evaluation:run", pk=run.pk)


@require_POST
@role_required(RESEARCHER)
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(InferenceRun, pk=pk)
    if not run.cancel():
        messages.info(request, "The run had already stopped.")
    return _after_action(request, run)


@require_POST
@role_required(RESEARCHER)
def run_resume(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(InferenceRun, pk=pk)
    if run.source == InferenceRun.Source.IMPORT or not services.inference_run_resume(run=run):
        messages.info(request, "Only a stopped run that was generated here can be resumed.")
    return _after_action(request, run)


@require_POST
@role_required(RESEARCHER)
def run_retry_failed(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(InferenceRun, pk=pk)
    try:
        count = services.inference_run_retry_failed(run=run)
        messages.success(request, f"Retrying {count} failed items.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return _after_action(request, run)


@require_GET
@role_required(RESEARCHER)
def run_export(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(InferenceRun.objects.select_related("endpoint"), pk=pk)
    out = io.StringIO()
    services.responses_export(run=run, out=out)
    response = HttpResponse(out.getvalue(), content_type="application/jsonl; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-{slugify(run.endpoint.name)}.jsonl"'
    return response


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def responses_import(request: HttpRequest) -> HttpResponse:
    form = ResponsesImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            lines = data["file"].read().decode("utf-8-sig").splitlines()
        except UnicodeDecodeError:
            form.add_error("file", "The file is not UTF-8 text.")
        else:
            run, report = services.responses_import(lines=lines, endpoint=data["endpoint"], dataset=data["dataset"],
                                                    by=request.user)
            if report.imported or report.unchanged:
                messages.success(request, f"Run {run.pk}: {report.summary()}")
            if not report.failed:
                return redirect("evaluation:run", pk=run.pk)
    return TemplateResponse(request, "evaluation/responses_import.html", {"form": form, "report": report},
                            status=400 if form.errors else 200)
