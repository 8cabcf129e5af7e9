"""Thin Celery tasks: primitives in, one service call, the retry policy.

Every task may run twice (acks_late redelivers after a lost worker) and is safe to: syncs diff and
take the sync lock, deliveries claim rows by lease, a webhook delivery is processed once. Each kind
has its own queue (settings.CELERY_TASK_ROUTES), so deliveries never wait behind a sync.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from psplan import queue
from scoping import sync, webhooks, write_back

logger = logging.getLogger(__name__)
_ACK_LATE = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(bind=True, **_ACK_LATE)
def sync_all_systems(self, full: bool = False) -> None:
    """GitLab, Salesforce and the rules, then delivery handed to its queue; no retry: the next run is the retry."""
    report = sync.run_sync(
        full=full,
        gitlab=settings.GITLAB_ENABLED,
        salesforce=settings.SALESFORCE_ENABLED,
        # Without a worker to hand delivery to, it happens here, patiently.
        delivery_budget=settings.PSPLAN_DELIVERY_BUDGET if self.request.is_eager else None,
    )
    for step in report.steps:
        logger.log(logging.WARNING if step.failed else logging.INFO, step.message)


@shared_task(**_ACK_LATE)
def deliver_gitlab_writes() -> None:
    """Send due GitLab writes; their backoff lives in the rows, not in Celery."""
    queue.forget_window("gitlab")
    write_back.deliver_gitlab_writes()


@shared_task(**_ACK_LATE)
def apply_waiting_webhook_deliveries() -> None:
    """Apply webhook deliveries stored while the broker was down."""
    webhooks.apply_waiting_deliveries()


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
