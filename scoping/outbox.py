"""Delivery of queued GitLab writes (GitLabWrite rows)."""

from __future__ import annotations

from django.conf import settings


def deliver_pending_writes() -> int:
    """Send pending writes to GitLab; returns how many were delivered."""
    if not settings.GITLAB_ENABLED:
        return 0
    raise NotImplementedError("GitLab write-back delivery is not built yet")
