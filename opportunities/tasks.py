"""Thin Celery tasks: primitives in, one service call, the retry policy."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_salesforce_writes() -> None:
    """Send pending PS-field edits to Salesforce."""
    from opportunities.outbox import deliver_pending_writes

    deliver_pending_writes()
