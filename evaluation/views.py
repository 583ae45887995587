from __future__ import annotations

import io
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.models import Dataset, DatasetFrozen, Question
from annotation.roles import CURATOR, RESEARCHER, has_role, role_required, staff_required
from annotation.tasks_catalog import Task

from . import analysis, critics, exchange, inference, plots, rewrites, runs, workers
from .exchange import attachment
from .forms import (
    CriticRunForm,
    CritiquesImportForm,
    EndpointForm,
    InferenceRunForm,
    NewTemplateForm,
    ResponsesImportForm,
    RewriteRunForm,
    TemplateForm,
)
from .models import (
    CriticRun,
    CriticScore,
    EndpointCheck,
    InferenceRun,
    ModelEndpoint,
    Ping,
    PromptTemplate,
    Response,
    RewriteRun,
    Worker,
)


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
        "broker": workers.broker_status(),
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
    ping = workers.ping_create(queue=queue)
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
    check = workers.endpoint_check_create(endpoint=row)
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
        try:
            run = inference.inference_run_create(endpoint=data["endpoint"], dataset=data["dataset"],
                                                tasks=data["tasks"], variants=data["variants"], by=request.user)
            return redirect("evaluation:run", pk=run.pk)
        except ValueError as exc:
            form.add_error(None, str(exc))
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


@require_GET
@role_required(RESEARCHER)
def run_export(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(InferenceRun.objects.select_related("endpoint"), pk=pk)
    out = io.StringIO()
    exchange.responses_export(run=run, out=out)
    response = HttpResponse(out.getvalue(), content_type="application/jsonl; charset=utf-8")
    return attachment(response, f"run-{run.pk}-{slugify(run.endpoint.name)}.jsonl")


def _uploaded_lines(form) -> list[str] | None:
    """The uploaded file's lines, or None with an error on the form when it is not UTF-8 text."""
    try:
        # Only "\n" ends a line in JSONL: str.splitlines() would also split inside an answer at
        # U+2028, U+0085 and friends, which json.dumps(ensure_ascii=False) writes raw.
        return form.cleaned_data["file"].read().decode("utf-8-sig").split("\n")
    except UnicodeDecodeError:
        form.add_error("file", "The file is not UTF-8 text.")
        return None


NOTHING_IMPORTED = "Nothing imported: no line could be read (the lines are listed below)."


def _report_import(request: HttpRequest, run, report) -> HttpResponse | None:
    """Say what an import stored; on to its run's page unless a line failed (the import page lists them)."""
    messages.success(request, f"{'Critic run' if isinstance(run, CriticRun) else 'Run'} {run.pk}: {report.summary()}")
    return None if report.failed else redirect(run_page_url(run))


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def responses_import(request: HttpRequest) -> HttpResponse:
    form = ResponsesImportForm(request.POST or None, request.FILES or None)
    report = None
    if request.method == "POST" and form.is_valid() and (lines := _uploaded_lines(form)) is not None:
        data = form.cleaned_data
        try:
            run, report = exchange.responses_import(lines=lines, endpoint=data["endpoint"], dataset=data["dataset"],
                                                    run=data["run"], by=request.user)
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            if run is None:
                form.add_error("file", NOTHING_IMPORTED)
            elif done := _report_import(request, run, report):
                return done
            else:  # upload the fixed file here again: it is added to this run
                form = ResponsesImportForm(initial={"endpoint": run.endpoint_id, "dataset": run.dataset_id, "run": run.pk})
    return TemplateResponse(request, "evaluation/responses_import.html", {"form": form, "report": report},
                            status=400 if form.errors else 200)


# --- critic runs ----------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def critiques_import(request: HttpRequest) -> HttpResponse:
    """The released runner's critiques (or any critic's, in its format) as a critic run."""
    form = CritiquesImportForm(request.POST or None, request.FILES or None, initial={"run": request.GET.get("run")})
    report = None
    if request.method == "POST" and form.is_valid() and (lines := _uploaded_lines(form)) is not None:
        data = form.cleaned_data
        critic_run, report = exchange.critiques_import(lines=lines, run=data["run"], critic_name=data["critic_name"],
                                                       by=request.user)
        if critic_run is None:
            form.add_error("file", NOTHING_IMPORTED)
        elif done := _report_import(request, critic_run, report):
            return done
    return TemplateResponse(request, "evaluation/critiques_import.html", {"form": form, "report": report},
                            status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def critic_run_create(request: HttpRequest) -> HttpResponse:
    default = critics.critic_template_default()
    initial = {"template": default.pk, "inference_runs": request.GET.getlist("run")}
    form = CriticRunForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            run = critics.critic_run_create(critic=data["critic"], template=data["template"],
                                             inference_runs=list(data["inference_runs"]),
                                             max_retries=data["max_retries"], by=request.user)
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("evaluation:critic_run", pk=run.pk)
    return TemplateResponse(request, "evaluation/critic_run_new.html", {"form": form},
                            status=400 if form.errors else 200)


@require_GET
@role_required(RESEARCHER)
def critic_run_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    run = get_object_or_404(CriticRun.objects.select_related("critic", "template"), pk=pk)
    scores = CriticScore.objects.filter(critic_run=run).select_related("response__question").order_by("id")
    status = request.GET.get("status", "")
    if status in CriticScore.ParseStatus.values:
        scores = scores.filter(parse_status=status)
    context = {"run": run, "page": Paginator(scores, 25).get_page(request.GET.get("page")), "status": status,
               "statuses": CriticScore.ParseStatus.choices, "inference_runs": run.inference_runs.all()}
    template = "evaluation/critic_run.html"
    if request.htmx:
        template += "#scores" if request.htmx.target == "scores" else "#progress"
    return TemplateResponse(request, template, context)


@require_GET
@role_required(RESEARCHER)
def critic_run_export(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(CriticRun, pk=pk)
    out = io.StringIO()
    exchange.critiques_export(run=run, out=out)
    response = HttpResponse(out.getvalue(), content_type="application/jsonl; charset=utf-8")
    return attachment(response, f"critic-run-{run.pk}.jsonl")


@require_GET
@role_required(RESEARCHER)
def response_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    """One answer with every critique of it; the raw reply and the exact prompt on demand."""
    response = get_object_or_404(Response.objects.select_related("run__endpoint", "question__image"), pk=pk)
    scores = response.critic_scores.select_related("critic_run__critic").order_by("id")
    context = {"response": response, "scores": scores}
    show, score_id = request.GET.get("show"), request.GET.get("score", "")
    if request.htmx and show in ("raw", "prompt") and score_id.isdigit():
        score = get_object_or_404(scores, pk=score_id)
        return TemplateResponse(request, "evaluation/response.html#detail", {"score": score, "show": show})
    return TemplateResponse(request, "evaluation/response.html", context)


# --- prompt templates -----------------------------------------------------------------------------------


@require_GET
@role_required(RESEARCHER)
def templates_list(request: HttpRequest) -> TemplateResponse:
    critics.critic_template_default()
    rewrites.rewrite_template_default()
    rows = PromptTemplate.objects.select_related("created_by").order_by("kind", "name", "-version")
    return TemplateResponse(request, "evaluation/templates.html", {"templates": rows})


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def template_create(request: HttpRequest) -> HttpResponse:
    """Paste another template, e.g. the prompt a fine-tuned critic was trained on, as version 1."""
    kind = request.POST.get("kind_choice") or request.GET.get("kind") or PromptTemplate.Kind.CRITIC
    form = NewTemplateForm(request.POST or None, kind=kind, initial={"kind_choice": kind})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        if PromptTemplate.objects.filter(kind=kind, name=data["name"]).exists():
            form.add_error("name", "A template of this kind already has that name: edit it to make a new version.")
        else:
            template = PromptTemplate.objects.create(kind=kind, name=data["name"], version=1, body=data["body"],
                                                     note=data["note"], created_by=request.user)
            messages.success(request, f"Template {template} created.")
            return redirect("evaluation:template", pk=template.pk)
    return TemplateResponse(request, "evaluation/template_new.html", {"form": form},
                            status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@role_required(RESEARCHER)
def template_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Editing never changes a version: saving makes the next one, so runs keep their exact words."""
    template = get_object_or_404(PromptTemplate, pk=pk)
    form = TemplateForm(request.POST or None, kind=template.kind, initial={"body": template.body})
    if request.method == "POST" and form.is_valid():
        new = template.revise(body=form.cleaned_data["body"], note=form.cleaned_data["note"], by=request.user)
        messages.success(request, f"Saved as {new}.")
        return redirect("evaluation:template", pk=new.pk)
    versions = PromptTemplate.objects.filter(kind=template.kind, name=template.name).order_by("-version")
    context = {"template": template, "form": form, "versions": versions,
               "preview_responses": Response.objects.filter(error="").select_related("question").order_by("-id")[:50]}
    return TemplateResponse(request, "evaluation/template.html", context, status=400 if form.errors else 200)


@require_GET
@role_required(RESEARCHER)
def template_preview(request: HttpRequest, pk: int) -> TemplateResponse:
    template = get_object_or_404(PromptTemplate, pk=pk, kind=PromptTemplate.Kind.CRITIC)
    response = Response.objects.select_related("question").filter(pk=request.GET.get("response") or 0).first()
    prompt = critics.critic_prompt(template=template, response=response) if response else ""
    return TemplateResponse(request, "evaluation/template.html#preview", {"prompt": prompt, "response": response})


# --- rewrite runs ---------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@role_required(CURATOR, RESEARCHER)
def rewrite_run_create(request: HttpRequest) -> HttpResponse:
    form = RewriteRunForm(request.POST or None, initial={"dataset": request.GET.get("dataset")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        picked = request.POST.getlist("seed")
        seeds = Question.objects.filter(pk__in=picked) if picked else None
        try:
            run = rewrites.rewrite_run_create(endpoint=data["endpoint"], dataset=data["dataset"],
                                              template=data["template"], per_seed=data["per_seed"], seeds=seeds,
                                              tasks=data["tasks"], by=request.user)
        except DatasetFrozen as exc:
            form.add_error("dataset", exc.messages[0])
        except ValueError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("evaluation:rewrite_run", pk=run.pk)
    dataset_id = request.GET.get("dataset", "")
    seeds = (rewrites.rewritable_seeds(dataset_id).order_by("group")[:500]
             if dataset_id.isdigit() else Question.objects.none())
    return TemplateResponse(request, "evaluation/rewrite_run_new.html", {"form": form, "seeds": seeds},
                            status=400 if form.errors else 200)


@require_GET
@role_required(CURATOR, RESEARCHER)
def rewrite_run_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    run = get_object_or_404(RewriteRun.objects.select_related("endpoint", "template", "dataset"), pk=pk)
    template = "evaluation/rewrite_run.html"
    if request.htmx:
        template += "#progress"
    return TemplateResponse(request, template, {"run": run})


# --- cancel, resume and retry, for every kind of run ----------------------------------------------------

# kind -> (model, page template, retry service, roles). The URLs pass the kind.
RUN_KINDS = {
    "inference": (InferenceRun, "evaluation/run.html", inference.inference_run_retry_failed, (RESEARCHER,)),
    "critic": (CriticRun, "evaluation/critic_run.html", critics.critic_run_retry, (RESEARCHER,)),
    "rewrite": (RewriteRun, "evaluation/rewrite_run.html", rewrites.rewrite_run_retry, (CURATOR, RESEARCHER)),
}


def _run_for_action(request: HttpRequest, pk: int, kind: str):
    model, template, retry, roles = RUN_KINDS[kind]
    if not has_role(request.user, *roles):
        raise PermissionDenied(f"This action is for: {', '.join(roles)}.")
    return get_object_or_404(model, pk=pk), template, retry


def _after_run_action(request: HttpRequest, run, template: str) -> HttpResponse:
    if request.htmx:
        run.refresh_from_db()
        return TemplateResponse(request, f"{template}#progress", {"run": run})
    return redirect(run_page_url(run))


def run_page_url(run) -> str:
    name = {InferenceRun: "evaluation:run", CriticRun: "evaluation:critic_run", RewriteRun: "evaluation:rewrite_run"}
    return reverse(name[type(run)], args=[run.pk])


@require_POST
@login_required
def run_cancel(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    run, template, _ = _run_for_action(request, pk, kind)
    if not run.cancel():
        messages.info(request, "The run had already stopped.")
    return _after_run_action(request, run, template)


@require_POST
@login_required
def run_resume(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    run, template, _ = _run_for_action(request, pk, kind)
    try:
        if not runs.run_resume(run=run):
            messages.info(request, "Only a stopped run that was generated here can be resumed.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return _after_run_action(request, run, template)


@require_POST
@login_required
def run_retry(request: HttpRequest, pk: int, kind: str) -> HttpResponse:
    run, template, retry = _run_for_action(request, pk, kind)
    try:
        count = retry(run=run)
        messages.success(request, f"Retrying {count} items.")
    except ValueError as exc:
        messages.error(request, str(exc))
    return _after_run_action(request, run, template)


# --- analysis: agreement, leaderboard, disagreements, training set -------------------------------------


def _ints(values: list[str]) -> list[int]:
    return [int(v) for v in values if v.strip().isdigit()]


def _choice(value: str | None, choices: tuple[str, ...]) -> str:
    return value if value in choices else choices[0]


def _critic_run_choices():
    return CriticRun.objects.select_related("critic").order_by("-created_at", "-pk")[:200]


@require_GET
@role_required(RESEARCHER)
def analysis_agreement(request: HttpRequest) -> TemplateResponse:
    """Critics against humans, side by side, overall and per task / category / model; humans against humans."""
    from .metrics import DEFAULT_BANDS, parse_bands

    ids = _ints(request.GET.getlist("critic_run"))
    runs = list(CriticRun.objects.filter(pk__in=ids).select_related("critic").order_by("pk"))
    human = _choice(request.GET.get("human"), analysis.HUMAN_MODES)
    by = _choice(request.GET.get("by"), analysis.BREAKDOWNS)
    bands_text, bands_error = request.GET.get("bands", "1-3,4-6,7-8,9-10"), ""
    try:
        bands = parse_bands(bands_text)
    except ValueError as exc:
        bands, bands_error = DEFAULT_BANDS, str(exc)
    # Human-human agreement is its own request (htmx loads it after the page; without JS, a link): it costs
    # as much SQL as the critic tables and doesn't change with the critic picked.
    with_humans = request.GET.get("humans") == "1"
    context = {"runs": _critic_run_choices(), "selected": [r.pk for r in runs], "human": human, "by": by,
               "bands_text": bands_text, "bands_error": bands_error, "metric_labels": analysis.METRIC_LABELS,
               "breakdowns": analysis.BREAKDOWNS, "humans_url": request.GET.copy()}
    context["humans_url"]["humans"] = "1"
    context["humans_url"] = context["humans_url"].urlencode()
    if request.htmx and with_humans and runs:
        context["humans"] = analysis.human_agreement_cached(
            inference_run_ids=analysis.inference_run_ids_of(runs), bands=bands)
        return TemplateResponse(request, "evaluation/analysis_agreement.html#humans", context)
    report = analysis.agreement_report_cached(critic_runs=runs, human=human, bands=bands, breakdowns=[by]) \
        if runs else None
    context["report"] = report
    if report and with_humans:
        context["humans"] = analysis.human_agreement_cached(
            inference_run_ids=analysis.inference_run_ids_of(runs), bands=bands)
    if report:
        context["plots"] = _agreement_plots(report, by, plots)
    template = "evaluation/analysis_agreement.html"
    if request.htmx:
        template += "#report"
    return TemplateResponse(request, template, context, status=400 if bands_error else 200)


def _agreement_plots(report, by: str, plots) -> dict:
    heatmaps = [plots.heatmap_svg(h.counts, title=f"{h.critic} · n={h.total}") for h in report.heatmaps]
    names = [run.label for run in report.critic_runs]
    groups: dict[str, dict] = {}
    for row in report.breakdowns.get(by, []):
        group = groups.setdefault(row.key, {"label": row.label, "values": [None] * len(names)})
        index = [run.pk for run in report.critic_runs].index(row.critic_run)
        estimate = row.metrics["mae"]
        group["values"][index] = (estimate.value, estimate.low, estimate.high)
    bars = plots.bars_svg(list(groups.values()), series=names, title="平均绝对误差 MAE (95% CI)", axis="MAE")
    distributions = [{"model": d["model"], "svg": plots.histogram_svg(d["series"], title=d["model"])}
                     for d in report.distributions]
    return {"heatmaps": heatmaps, "bars": bars, "distributions": distributions}


@dataclass
class LeaderboardRequest:
    """What a leaderboard page or export was asked for, and the board it gets."""

    datasets: list[Dataset]
    dataset: Dataset | None
    board: analysis.Leaderboard | None
    rows: list[analysis.LeaderboardRow]
    options: dict[str, str]


def _leaderboard_from_request(request: HttpRequest) -> LeaderboardRequest:
    datasets = list(Dataset.objects.order_by("name"))
    dataset = next((d for d in datasets if str(d.pk) == request.GET.get("dataset")), datasets[0] if datasets else None)
    source = _choice(request.GET.get("source"), analysis.SOURCES)
    score = _choice(request.GET.get("score"), analysis.SCORE_FIELDS)
    spread = _choice(request.GET.get("spread"), analysis.SPREADS)
    critic_run = None
    if request.GET.get("critic_run", "").isdigit():
        critic_run = CriticRun.objects.filter(pk=request.GET["critic_run"]).select_related("critic").first()
    board = analysis.leaderboard(dataset=dataset, source=source, critic_run=critic_run, score_field=score,
                                 spread=spread) if dataset else None
    sort = request.GET.get("sort", "micro")
    sort = sort if sort in analysis.LEADERBOARD_SORTS else "micro"
    descending = request.GET.get("dir", "desc" if sort != "model" else "asc") != "asc"
    rows = analysis.leaderboard_sort(board.rows, key=sort, descending=descending) if board else []
    return LeaderboardRequest(datasets=datasets, dataset=dataset, board=board, rows=rows,
                              options={"source": source, "score": score, "spread": spread, "sort": sort,
                                       "dir": "desc" if descending else "asc"})


@require_GET
@role_required(RESEARCHER)
def leaderboard(request: HttpRequest) -> TemplateResponse:
    asked = _leaderboard_from_request(request)
    dataset = asked.dataset
    critic_runs = CriticRun.objects.filter(inference_runs__dataset=dataset).distinct().select_related("critic") \
        .order_by("-created_at", "-pk")[:100] if dataset else []
    base = request.GET.copy()
    base.pop("sort", None), base.pop("dir", None)
    context = {"datasets": asked.datasets, "dataset": dataset, "board": asked.board,
               "board_rows": analysis.leaderboard_page_rows(asked.rows), **asked.options, "critic_runs": critic_runs,
               "columns": analysis.leaderboard_columns(spread=asked.options["spread"]), "query": request.GET.urlencode(),
               "base_query": base.urlencode()}
    template = "evaluation/leaderboard.html"
    if request.htmx:
        template += "#board"
    return TemplateResponse(request, template, context)


@require_GET
@role_required(RESEARCHER)
def leaderboard_export(request: HttpRequest, fmt: str) -> HttpResponse:
    import csv

    from django.http import Http404

    if fmt not in ("csv", "md"):
        raise Http404("Export as .csv or .md.")
    asked = _leaderboard_from_request(request)
    dataset, board, rows = asked.dataset, asked.board, asked.rows
    if board is None:
        return HttpResponse("No dataset.", status=404, content_type="text/plain; charset=utf-8")
    name = f"leaderboard-{slugify(dataset.name, allow_unicode=True) or dataset.pk}-{board.source}"
    if fmt == "md":
        response = HttpResponse(analysis.leaderboard_markdown(board, rows), content_type="text/markdown; charset=utf-8")
    else:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response.write("\ufeff")  # Excel opens UTF-8 CSV with Chinese model names correctly only with a BOM
        header, body = analysis.leaderboard_table(board, rows)
        writer = csv.writer(response)
        writer.writerow(header)
        writer.writerows(body)
    return attachment(response, f"{name}.{fmt}")


def _disagreement_filters(request: HttpRequest) -> dict:
    try:
        min_gap = max(float(request.GET.get("min_gap") or 0), 0.0)
    except ValueError:
        min_gap = 0.0
    task = request.GET.get("task", "")
    return {"critic_run_ids": _ints(request.GET.getlist("critic_run")), "task": task if task in Task.values else "",
            "run_id": (_ints([request.GET.get("run", "")]) or [None])[0], "min_gap": min_gap,
            "annotator_id": (_ints([request.GET.get("annotator", "")]) or [None])[0]}


@require_GET
@role_required(RESEARCHER)
def disagreements(request: HttpRequest) -> TemplateResponse:
    from django.contrib.auth import get_user_model

    filters = _disagreement_filters(request)
    rows = analysis.disagreements(**filters)
    annotators = get_user_model().objects.filter(human_scores__isnull=False).distinct().order_by("username")
    context = {"page": Paginator(rows, 25).get_page(request.GET.get("page")), "filters": filters,
               "tasks": Task.choices, "critic_runs": _critic_run_choices(), "annotators": annotators,
               "inference_runs": InferenceRun.objects.select_related("endpoint").order_by("-pk")[:200],
               "query": request.GET.urlencode()}
    template = "evaluation/disagreements.html"
    if request.htmx:
        template += "#rows"
    return TemplateResponse(request, template, context)


@require_GET
@role_required(RESEARCHER)
def disagreement_detail(request: HttpRequest, pk: int) -> TemplateResponse:
    """Everything about one critique next to the people's scores: image, dialogue, reference, answer."""
    score = get_object_or_404(CriticScore.objects.select_related("critic_run__critic", "response__run__endpoint",
                                                                 "response__question__image"), pk=pk)
    humans = score.response.human_scores.select_related("annotator").order_by("annotator__username")
    context = {"score": score, "response": score.response, "question": score.response.question, "humans": humans}
    template = "evaluation/_disagreement_detail.html" if request.htmx else "evaluation/disagreement.html"
    return TemplateResponse(request, template, context)


@require_GET
@role_required(RESEARCHER)
def disagreements_export(request: HttpRequest) -> HttpResponse:
    import csv

    from django.http import StreamingHttpResponse

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())
    rows = analysis.disagreements(**_disagreement_filters(request))

    def lines():
        yield "\ufeff" + writer.writerow(analysis.DISAGREEMENT_CSV_HEADER)
        for row in analysis.disagreement_csv_rows(rows):
            yield writer.writerow(row)

    return attachment(StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8"), "disagreements.csv")


def _training_set_options(request: HttpRequest) -> dict:
    template = PromptTemplate.objects.filter(kind=PromptTemplate.Kind.CRITIC,
                                             pk=(_ints([request.GET.get("template", "")]) or [0])[0]).first()
    dataset = Dataset.objects.filter(pk=(_ints([request.GET.get("dataset", "")]) or [0])[0]).first()
    agreement = request.GET.get("agreement", "any")
    try:
        min_annotators = max(int(request.GET.get("min_annotators") or 1), 1)
    except ValueError:
        min_annotators = 1
    return {"template": template or critics.critic_template_default(), "dataset": dataset,
            "annotator_ids": _ints(request.GET.getlist("annotator")),
            "agreement": agreement if agreement in analysis.AGREEMENT_LEVELS else "any",
            "min_annotators": min_annotators}


@require_GET
@role_required(RESEARCHER)
def training_set(request: HttpRequest) -> TemplateResponse:
    from django.contrib.auth import get_user_model

    options = _training_set_options(request)
    context = {"options": options, "query": request.GET.urlencode(),
               "templates": PromptTemplate.objects.filter(kind=PromptTemplate.Kind.CRITIC).order_by("name", "-version"),
               "datasets": Dataset.objects.order_by("name"),
               "annotators": get_user_model().objects.filter(human_scores__isnull=False).distinct().order_by("username")}
    return TemplateResponse(request, "evaluation/analysis_training_set.html", context)


@require_GET
@role_required(RESEARCHER)
def training_set_export(request: HttpRequest) -> HttpResponse:
    from django.http import StreamingHttpResponse

    lines = analysis.training_set_lines(**_training_set_options(request))
    return attachment(StreamingHttpResponse(lines, content_type="application/jsonl; charset=utf-8"),
                      "critic-training-set.jsonl")


@require_GET
@role_required(RESEARCHER)
def pairwise_ratings(request: HttpRequest) -> TemplateResponse:
    """Bradley-Terry ratings with intervals and the win-rate heat map, from a dataset's scores read as pairs."""
    from annotation.models import Dataset

    from . import plots
    from .pairs import HUMAN_SCORES, pointwise_votes
    from .ratings import RatingsError, compute_ratings

    datasets = list(Dataset.objects.order_by("name"))
    dataset = next((d for d in datasets if str(d.pk) == request.GET.get("dataset")), datasets[0] if datasets else None)
    source = request.GET.get("source") or HUMAN_SCORES
    critic_runs = CriticRun.objects.filter(inference_runs__dataset=dataset).distinct().select_related("critic") \
        .order_by("-created_at", "-pk")[:100] if dataset else []
    ratings = error = heatmap = None
    if dataset is not None:
        try:
            ratings = compute_ratings(pointwise_votes(dataset=dataset, source=source), bootstrap=1000, seed=0)
        except RatingsError as problem:
            error = str(problem)
    if ratings is not None:
        heatmap = plots.win_rate_svg([m.model for m in ratings.models], ratings.win_rate,
                                     title="胜率 Win rate (row vs column, ties half)")
    sources = [(HUMAN_SCORES, "人工评分 Human scores (mean)"),
               *((f"critic-run:{run.pk}", f"#{run.pk} · {run.label}") for run in critic_runs)]
    context = {"datasets": datasets, "dataset": dataset, "source": source, "sources": sources, "ratings": ratings,
               "error": error, "heatmap": heatmap}
    template = "evaluation/pairwise_ratings.html"
    if request.htmx:
        template += "#ratings"
    return TemplateResponse(request, template, context)
