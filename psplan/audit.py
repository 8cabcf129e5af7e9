"""The shape of a recorded change, shared by scoping issues and opportunities: who, what, before, after, where from."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ChangeSource(models.TextChoices):
    """Where a change was made; PS Plan's own sources are the ones that queue a write-back."""

    PAGE = "page", "PS Plan page"
    API = "api", "PS Plan API"
    ADMIN = "admin", "PS Plan admin"
    RULE = "rule", "Closing rule"
    GITLAB = "gitlab", "GitLab"
    SALESFORCE = "salesforce", "Salesforce"


class ChangeRecord(models.Model):
    """One field of one record changed: kept for the audit trail and the issue's timeline."""

    field = models.CharField(max_length=50)
    old_value = models.TextField(blank=True)
    new_value = models.TextField(blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=12, choices=ChangeSource.choices, default=ChangeSource.PAGE)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The PS Plan user, for changes made in PS Plan",
    )
    actor_name = models.CharField(
        max_length=255, blank=True, help_text="Who, as the other system names them, when it says"
    )

    class Meta:
        abstract = True
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{self.field}: {self.old_value!r} → {self.new_value!r} ({self.get_source_display()})"

    @property
    def who(self) -> str:
        """A person's name for pages: the PS Plan user, else the other system's name, else the system."""
        if self.actor is not None:
            return self.actor.get_full_name() or self.actor.get_username()
        return self.actor_name or self.get_source_display()
