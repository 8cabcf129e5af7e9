"""Thin Celery tasks: primitives in, one service call, the retry policy.

Every task may run twice (acks_late redelivers after a lost worker) and is safe to: syncs diff and
take the sync lock, the outbox claims rows by lease, a webhook delivery is processed once.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from scoping import outbox, sync, webhooks

logger = logging.getLogger(__name__)
_ACK_LATE = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(**_ACK_LATE)
def sync_all_systems(full: bool = False) -> None:
    """GitLab, Salesforce and the rules; no retry: the next scheduled run is the retry."""
    report = sync.run_sync(full=full, gitlab=settings.GITLAB_ENABLED, salesforce=settings.SALESFORCE_ENABLED)
    for step in report.steps:
        logger.log(logging.WARNING if step.failed else logging.INFO, step.message)


@shared_task(**_ACK_LATE)
def sync_gitlab(full: bool = False) -> None:
    """The GitLab mirror alone (under the same lock as every sync)."""
    report = sync.run_sync(full=full, gitlab=True, salesforce=False, rules=False)
    for step in report.steps:
        logger.log(logging.WARNING if step.failed else logging.INFO, step.message)


@shared_task(bind=True, **_ACK_LATE)
def deliver_gitlab_writes(self) -> None:
    """Send due outbox entries to GitLab; their backoff lives in the rows, not in Celery."""
    # Without a broker this runs inside the EM's request: one try each, the outbox retries later.
    outbox.deliver_pending_writes(patient=not self.request.is_eager)


@shared_task(**_ACK_LATE)
def prune_webhook_deliveries() -> None:
    """Forget processed webhook deliveries once GitLab can no longer redeliver them."""
    webhooks.prune_deliveries()


@shared_task(
    **_ACK_LATE,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=300,
    max_retries=8,
)
def process_webhook_delivery(delivery_id: int) -> None:
    """Apply one stored webhook delivery to the mirror."""
    logger.info("Webhook delivery %s: %s", delivery_id, webhooks.process_delivery(delivery_id=delivery_id))
