from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from annotation.roles import ANNOTATOR, CURATOR, RESEARCHER, has_role


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each person to their work; someone with no role yet gets a page that says so."""
    user = request.user
    if has_role(user, RESEARCHER):
        return redirect("evaluation:runs")
    if has_role(user, CURATOR):
        return redirect("annotation:library")
    if has_role(user, ANNOTATOR):
        return redirect("annotation:score_home")
    return render(request, "no_role.html", status=200)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "403.html", {"reason": str(exception or "")}, status=403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)
