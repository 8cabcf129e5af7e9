"""Thin Celery tasks: primitives in, one service call, the retry policy."""

from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_gitlab_writes() -> None:
    """Send pending outbox entries to GitLab."""
    from scoping.outbox import deliver_pending_writes

    deliver_pending_writes()
