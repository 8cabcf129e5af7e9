"""API tokens: django-rest-knox's model, which keeps only a digest of each key, under PS Plan's names."""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from knox.models import AuthToken


class ApiTokenQuerySet(models.QuerySet):
    def for_user(self, user) -> ApiTokenQuerySet:
        return self.filter(user=user).order_by("-created")


class ApiToken(AuthToken):
    """One API token. Its key is shown once, when it is made; afterwards only `token_key`, the start of
    it, identifies the token."""

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        proxy = True
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.token_key}… of {self.user}"

    @property
    def is_expired(self) -> bool:
        return self.expiry is not None and self.expiry <= timezone.now()
