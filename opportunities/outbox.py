"""Delivery of queued Salesforce writes (SalesforceWrite rows): claimed, batched, never lost.

A write leaves PENDING only as DELIVERED, CONFLICT (Salesforce changed since the edit was based
on it) or FAILED (Salesforce refused it, with its message). Outages put it back with a backoff.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from opportunities.choices import OutboxStatus, SyncKind, SyncStatus
from opportunities.models import SalesforceWrite, SyncRun
from opportunities.salesforce_client import (
    OpportunityUpdate,
    SalesforceClient,
    SalesforceError,
    SalesforceOpportunity,
    SalesforceRateLimited,
    SalesforceRefused,
    WriteResult,
    to_18_char_id,
)
from opportunities.salesforce_sync import (
    SalesforceBackingOff,
    apply_records,
    check_backoff,
    em_confidence,
    finish_run,
    rate_limit_backoff,
)

# 600 fills whole requests of every kind: 3 collections of 200, 24 composites of 25, 2 reads of 300.
CLAIM_BATCH = 600
LEASE = timedelta(minutes=10)  # a worker that dies mid-batch releases its rows after this
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)

# SalesforceWrite.changes keys (local field names) → the client's logical field names.
_WIRE_NAMES = {
    "engagement_manager": "engagement_manager_id",
    "em_confidence": "em_confidence",
    "em_confidence_rationale": "em_confidence_rationale",
    "scoping_issue_link": "scoping_issue_link",
}


def deliver_pending_writes(*, client: SalesforceClient | None = None) -> int:
    """Send due SalesforceWrite rows to Salesforce in batches; returns how many were delivered."""
    if not settings.SALESFORCE_ENABLED or not _due().exists():
        return 0
    run = SyncRun.objects.create(kind=SyncKind.SALESFORCE_OUTBOX)
    counts: Counter = Counter({status.value: 0 for status in OutboxStatus if status != OutboxStatus.PENDING})
    try:
        check_backoff()
        client = client or SalesforceClient.from_settings()
        while writes := claim_due_writes(limit=CLAIM_BATCH):
            _deliver(client, writes, counts)
    except SalesforceBackingOff as exc:
        finish_run(run, counts=counts, error=exc, status=SyncStatus.SKIPPED)
    except SalesforceError as exc:
        # Not raised: the rows wait for their next attempt, and the task must not retry at once.
        finish_run(run, counts=counts, client=client, error=exc)
    except Exception as exc:
        finish_run(run, counts=counts, client=client, error=exc)
        raise
    else:
        finish_run(run, counts=counts, client=client)
    return counts[OutboxStatus.DELIVERED]


def _due():
    return SalesforceWrite.objects.filter(status=OutboxStatus.PENDING, next_attempt_at__lte=timezone.now())


def claim_due_writes(*, limit: int) -> list[SalesforceWrite]:
    """Lease up to `limit` due writes to this worker: one conditional UPDATE, so no row is sent twice."""
    now = timezone.now()
    # The lease end doubles as the claim token: the UPDATE only takes rows still due, and the
    # random microseconds keep two workers' tokens apart, so each reads back only its own rows.
    token = now + LEASE + timedelta(microseconds=random.randrange(1, 1_000_000))
    candidates = list(_due().order_by("created_at", "id").values_list("pk", flat=True)[:limit])
    SalesforceWrite.objects.filter(
        pk__in=candidates, status=OutboxStatus.PENDING, next_attempt_at__lte=now
    ).update(next_attempt_at=token, attempts=F("attempts") + 1)
    claimed = SalesforceWrite.objects.filter(pk__in=candidates, next_attempt_at=token)
    return list(claimed.select_related("opportunity").order_by("created_at", "id"))


@dataclass(eq=False)  # compared by identity
class _Group:
    """All claimed writes of one opportunity, sent as one update (two would conflict with each other)."""

    writes: list[SalesforceWrite]
    fields: dict[str, object]
    base: datetime | None

    @property
    def opportunity(self):
        return self.writes[0].opportunity


def _groups(writes: Sequence[SalesforceWrite]) -> list[_Group]:
    groups: dict[int, _Group] = {}
    for write in writes:  # oldest first, so later edits of a field win
        group = groups.setdefault(write.opportunity_id, _Group([], {}, write.base_modstamp))
        group.writes.append(write)
        group.fields.update(write.changes)
        # The oldest base is the safe one: any Salesforce edit after it must not be overwritten.
        if write.base_modstamp and (group.base is None or write.base_modstamp < group.base):
            group.base = write.base_modstamp
    return list(groups.values())


def _deliver(client: SalesforceClient, writes: list[SalesforceWrite], counts: Counter) -> None:
    groups = _groups(writes)
    try:
        landed = _landed_before(client, groups)
        to_send = [group for group in groups if group not in landed]
        results = [WriteResult(g.opportunity.salesforce_id, True) for g in landed] + _send(client, to_send)
    except SalesforceError as exc:
        _retry_later(writes, exc)
        counts["retried"] += len(writes)
        raise
    current, reread_error = _reread(client, groups)
    for group, result in zip([*landed, *to_send], results, strict=True):
        _record(group, result, current.get(group.opportunity.salesforce_id[:15]), counts)
    SalesforceWrite.objects.bulk_update(writes, ["status", "last_error", "delivered_at", "next_attempt_at"])
    if reread_error is not None:
        raise reread_error  # the outcomes are saved; the next pull brings the mirror up to date
    _rebase_followers(groups, current)
    # The mirror takes Salesforce's values now: delivered ones with their new SystemModstamp, so
    # the next pull sees nothing new; conflicted and refused ones back to what Salesforce has.
    apply_records(list(current.values()))


def _landed_before(client: SalesforceClient, groups: list[_Group]) -> list[_Group]:
    """Retried writes whose values Salesforce already has: an earlier attempt landed, its answer lost.

    If-Unmodified-Since has whole-second precision, so a re-send within the second of the first
    would not be refused; looking first is what keeps a write from being applied twice.
    """
    retried = [group for group in groups if any(write.attempts > 1 for write in group.writes)]
    if not retried:
        return []
    current, error = _reread(client, retried)
    if error is not None:
        raise error
    return [g for g in retried if _already_there(g, current.get(g.opportunity.salesforce_id[:15]))]


def _send(client: SalesforceClient, groups: list[_Group]) -> list[WriteResult]:
    updates = [
        OpportunityUpdate(
            id=group.opportunity.salesforce_id,
            fields={
                _WIRE_NAMES[name]: value if value != "" else None for name, value in group.fields.items()
            },
            unmodified_since=group.base,
        )
        for group in groups
    ]
    try:
        return client.update_opportunities(updates) if updates else []
    except SalesforceRefused as exc:  # the whole request refused: nothing was applied
        return [WriteResult(u.id, False, exc.error_code, exc.message) for u in updates]


def _reread(
    client: SalesforceClient, groups: list[_Group]
) -> tuple[dict[str, SalesforceOpportunity], SalesforceError | None]:
    """Salesforce's values after the write (⌈n/300⌉ queries): new SystemModstamps, conflicts' cause."""
    ids = []
    for group in groups:
        try:
            ids.append(to_18_char_id(group.opportunity.salesforce_id))
        except ValueError:
            continue  # Salesforce refused it as MALFORMED_ID already
    try:
        return {record.id[:15]: record for record in client.iter_opportunities_by_id(ids)}, None
    except SalesforceError as exc:
        return {}, exc


def _record(
    group: _Group, result: WriteResult, current: SalesforceOpportunity | None, counts: Counter
) -> None:
    now = timezone.now()
    if result.success or (result.error_code == "CONFLICT" and _already_there(group, current)):
        # A CONFLICT whose values Salesforce already holds is our own earlier attempt that
        # landed before its answer was lost: delivered, not applied twice.
        status, message = OutboxStatus.DELIVERED, ""
    elif result.error_code == "CONFLICT":
        status, message = OutboxStatus.CONFLICT, _conflict_message(group, current)
    else:
        status, message = (
            OutboxStatus.FAILED,
            f"Salesforce refused the change: {result.error_code}: {result.message}",
        )
    counts[OutboxStatus(status).value] += len(group.writes)
    for write in group.writes:
        write.status, write.last_error = status, message
        write.delivered_at = now if status == OutboxStatus.DELIVERED else None
        write.next_attempt_at = now


def _wire_current(record: SalesforceOpportunity) -> dict[str, object]:
    return {
        "engagement_manager": (record.engagement_manager_id or "")[:15],
        "em_confidence": em_confidence(record.em_confidence),
        "em_confidence_rationale": record.em_confidence_rationale,
        "scoping_issue_link": record.scoping_issue_link or "",
    }


def _already_there(group: _Group, current: SalesforceOpportunity | None) -> bool:
    if current is None:
        return False
    now = _wire_current(current)
    wanted = {name: (value or "") for name, value in group.fields.items()}
    if "engagement_manager" in wanted:
        wanted["engagement_manager"] = str(wanted["engagement_manager"])[:15]
    return all(now[name] == value for name, value in wanted.items())


def _conflict_message(group: _Group, current: SalesforceOpportunity | None) -> str:
    when = f" at {current.system_modstamp:%Y-%m-%d %H:%M:%S %Z}" if current else ""
    base = f"{group.base:%Y-%m-%d %H:%M:%S %Z}" if group.base else "the edit"
    return (
        f"Not sent: someone changed this opportunity in Salesforce{when}, after the version this edit "
        f"was based on ({base}). PS Plan now shows Salesforce's values; make the edit again if it "
        "still applies."
    )


def _rebase_followers(groups: list[_Group], current: dict[str, SalesforceOpportunity]) -> None:
    """Edits queued while ours was in flight were based on the version our write just replaced."""
    delivered = {g.opportunity.pk: g for g in groups if g.writes[0].status == OutboxStatus.DELIVERED}
    followers = SalesforceWrite.objects.filter(
        opportunity_id__in=delivered, status=OutboxStatus.PENDING
    ).exclude(pk__in=[w.pk for g in groups for w in g.writes])
    for write in followers:
        group = delivered[write.opportunity_id]
        record = current.get(group.opportunity.salesforce_id[:15])
        if record is not None and write.base_modstamp == group.base:
            write.base_modstamp = record.system_modstamp
            write.save(update_fields=["base_modstamp"])


def _retry_later(writes: list[SalesforceWrite], error: SalesforceError) -> None:
    """Put the batch back with a capped exponential backoff: an outage loses nothing."""
    now = timezone.now()
    for write in writes:
        delay = min(RETRY_CAP, RETRY_BASE * 2 ** max(0, write.attempts - 1))
        if isinstance(error, SalesforceRateLimited):
            delay = max(delay, rate_limit_backoff())
        write.next_attempt_at = now + delay
        write.last_error = f"Salesforce unavailable, will retry: {error}"
    SalesforceWrite.objects.bulk_update(writes, ["next_attempt_at", "last_error"])
