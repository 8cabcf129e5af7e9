"""Delivery of queued Salesforce writes (SalesforceWrite rows): claimed, batched, never lost.

A write leaves pending only as delivered or failed: refused by Salesforce (with its message), or not
sent because someone changed the opportunity in Salesforce after the version the edit was based on
(If-Unmodified-Since). An outage puts it back with a backoff. 25 conditional updates go in one
Composite request, and one query reads the results back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
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
    rate_limit_backoff,
    rate_limit_error,
    record_api_usage,
)
from psplan import queue
from psplan.queue import WriteStatus

# 200 fills whole requests: 8 composites of 25 and one read-back query.
BATCH = 200
RETRY_BASE, RETRY_CAP = 30.0, 3600.0
PATIENT_RETRY_BASE, PATIENT_RETRY_CAP = 0.5, 30.0

# SalesforceWrite.changes keys (local field names) → the client's logical field names.
_WIRE_NAMES = {
    "engagement_manager": "engagement_manager_id",
    "em_confidence": "em_confidence",
    "em_confidence_rationale": "em_confidence_rationale",
    "scoping_issue_link": "scoping_issue_link",
}


def deliver_salesforce_writes(*, budget: float = 0.0, client: SalesforceClient | None = None) -> Counter:
    """Send due writes to Salesforce; with a `budget` in seconds, transient failures are retried within it."""
    counts: Counter = Counter(delivered=0, failed=0, retrying=0)
    if (client is None and not settings.SALESFORCE_ENABLED) or not queue.due(SalesforceWrite).exists():
        return counts
    with SyncRun.running(SyncKind.SALESFORCE_OUTBOX) as run:
        try:
            check_backoff()
        except SalesforceBackingOff as exc:
            run.finish(counts=counts, error=exc, status=SyncStatus.SKIPPED)
            return counts
        client = client or SalesforceClient.from_settings(max_retries=None if budget else 0)
        courier = _Courier(client, counts, patient=budget > 0)
        try:
            queue.drain(SalesforceWrite, courier.deliver, batch=BATCH, budget=budget)
        finally:
            run.counts = record_api_usage(counts, client, courier.error)
        error = rate_limit_error(courier.error) if courier.error else None
        run.finish(error=error, status=SyncStatus.FAILED if counts["failed"] or error else None)
    return counts


class _Courier:
    """One delivery run: the client, the counts, the last outage."""

    def __init__(self, client: SalesforceClient, counts: Counter, *, patient: bool) -> None:
        self.client = client
        self.counts = counts
        self.patient = patient
        self.error: SalesforceError | None = None

    def deliver(self, writes: list[SalesforceWrite]) -> bool:
        """Deliver one claimed batch; False when Salesforce cannot be used now."""
        try:
            _deliver(self.client, writes, self.counts)
        except SalesforceError as exc:
            self.error = exc
            self._retry_later(writes, exc)
            return False
        return True

    def _retry_later(self, writes: list[SalesforceWrite], error: SalesforceError) -> None:
        """Put the batch back with a capped exponential backoff: an outage loses nothing."""
        still_pending = list(
            SalesforceWrite.objects.filter(pk__in=[w.pk for w in writes], status=WriteStatus.PENDING)
        )
        base, cap = (PATIENT_RETRY_BASE, PATIENT_RETRY_CAP) if self.patient else (RETRY_BASE, RETRY_CAP)
        limit_wait = (
            rate_limit_backoff().total_seconds() if isinstance(error, SalesforceRateLimited) else None
        )
        delay = queue.retry_delay(
            max((w.attempts for w in writes), default=1), base=base, cap=cap, retry_after=limit_wait
        )
        queue.retry_later(still_pending, error=f"Salesforce unavailable, will retry: {error}", delay=delay)
        self.counts["retrying"] += len(still_pending)


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
    landed = _landed_before(client, groups)
    to_send = [group for group in groups if group not in landed]
    results = [WriteResult(g.opportunity.salesforce_id, True) for g in landed] + _send(client, to_send)
    current, reread_error = _reread(client, groups)
    for group, result in zip([*landed, *to_send], results, strict=True):
        _record(group, result, current.get(group.opportunity.salesforce_id[:15]), counts)
    SalesforceWrite.objects.bulk_update(
        writes, ["status", "last_error", "delivered_at", "failed_at", "next_attempt_at"]
    )
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
        status, message = WriteStatus.DELIVERED, ""
    elif result.error_code == "CONFLICT":
        status, message = WriteStatus.FAILED, _conflict_message(group, current)
    else:
        status, message = (
            WriteStatus.FAILED,
            f"Salesforce refused the change: {result.error_code}: {result.message}",
        )
    counts[WriteStatus(status).value] += len(group.writes)
    for write in group.writes:
        write.status, write.last_error = status, message
        write.delivered_at = now if status == WriteStatus.DELIVERED else None
        write.failed_at = now if status == WriteStatus.FAILED else None
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
    delivered = {g.opportunity.pk: g for g in groups if g.writes[0].status == WriteStatus.DELIVERED}
    followers = SalesforceWrite.objects.filter(
        opportunity_id__in=delivered, status=WriteStatus.PENDING
    ).exclude(pk__in=[w.pk for g in groups for w in g.writes])
    for write in followers:
        group = delivered[write.opportunity_id]
        record = current.get(group.opportunity.salesforce_id[:15])
        if record is not None and write.base_modstamp == group.base:
            write.base_modstamp = record.system_modstamp
            write.save(update_fields=["base_modstamp"])
