"""Roles are Django groups (curator, annotator, researcher); staff are admins.

Views check roles with ``role_required``; templates only *show* what the role may use (the nav),
never decide access, because an htmx partial can be requested on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

CURATOR = "curator"
ANNOTATOR = "annotator"
RESEARCHER = "researcher"
ROLES = (CURATOR, ANNOTATOR, RESEARCHER)


def roles_of(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_alignbench_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._alignbench_roles = cached
    return cached


def has_role(user, *roles: str) -> bool:
    """Staff may do everything; others need one of the roles."""
    return user.is_authenticated and (user.is_staff or bool(roles_of(user) & set(roles)))


def role_required(*roles: str) -> Callable:
    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not has_role(request.user, *roles):
                raise PermissionDenied(f"This page is for: {', '.join(roles)}.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def staff_required(view: Callable) -> Callable:
    @login_required
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("This page is for administrators.")
        return view(request, *args, **kwargs)

    return wrapped


def roles_context(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"role": {}}
    return {
        "role": {
            "curator": has_role(user, CURATOR),
            "annotator": has_role(user, ANNOTATOR),
            "researcher": has_role(user, RESEARCHER),
            "staff": user.is_staff,
        }
    }
