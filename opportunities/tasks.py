"""Thin Celery tasks: primitives in, one service call, the retry policy."""

from __future__ import annotations

from celery import shared_task

from opportunities import write_back
from psplan import queue


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_salesforce_writes() -> None:
    """Send due PS-field edits to Salesforce; outages wait in the rows' backoff, not in Celery retries."""
    queue.forget_window("salesforce")
    write_back.deliver_salesforce_writes()
