"""The authentication backend: Django's ModelBackend, except that loading the signed-in user for a
request also loads their roles (``annotation.roles``) in the same query, so role checks and the
nav's ``role`` context cost no query of their own."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Group
from django.db.models import Exists, OuterRef

from .roles import ROLES


class RoleBackend(ModelBackend):
    def get_user(self, user_id):
        model = get_user_model()
        flags = {f"_has_role_{role}": Exists(Group.objects.filter(user=OuterRef("pk"), name=role)) for role in ROLES}
        try:
            user = model._default_manager.annotate(**flags).get(pk=user_id)
        except model.DoesNotExist:
            return None
        user._alignbench_roles = {role for role in ROLES if getattr(user, f"_has_role_{role}")}
        return user if self.user_can_authenticate(user) else None
