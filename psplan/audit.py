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


SOURCE_NAMES = dict(ChangeSource.choices)


def source_name(source: str) -> str:
    """Where a change came from, in words ("PS Plan page", "GitLab")."""
    return SOURCE_NAMES.get(source, source)


def person_name(first_name: str | None, last_name: str | None, username: str | None) -> str | None:
    """A PS Plan user as pages name them: their full name, else their username."""
    return f"{first_name or ''} {last_name or ''}".strip() or username


def changed_by(
    *, first_name: str | None, last_name: str | None, username: str | None, actor_name: str, source: str
) -> str:
    """Who made a change, for pages: the PS Plan user (no user: no names), else the name the other system
    gave, else the system. Rows read with values() and ChangeRecord.who share it."""
    return person_name(first_name, last_name, username) or actor_name or source_name(source)


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
        actor = self.actor
        return changed_by(
            first_name=actor and actor.first_name,
            last_name=actor and actor.last_name,
            username=actor and actor.get_username(),
            actor_name=self.actor_name,
            source=self.source,
        )
