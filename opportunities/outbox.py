"""Delivery of queued Salesforce writes (SalesforceWrite rows)."""

from __future__ import annotations

from django.conf import settings


def deliver_pending_writes() -> int:
    """Send pending writes to Salesforce; returns how many were delivered."""
    if not settings.SALESFORCE_ENABLED:
        return 0
    raise NotImplementedError("Salesforce write-back delivery is not built yet")
