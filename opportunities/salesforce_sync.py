"""The Salesforce pull: mirror opportunities with their accounts and EMs, in bulk, with history.

Which opportunities: those with an engagement manager or a scoping issue link, plus the ids the
caller passes (the scoping app collects those from issue descriptions; this app must not import it).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from opportunities.choices import EMConfidence, SyncKind, SyncStatus
from opportunities.models import (
    Account,
    EngagementManager,
    Opportunity,
    OpportunityChange,
    SalesforceWrite,
    SyncRun,
    Territory,
)
from opportunities.salesforce_client import (
    SalesforceClient,
    SalesforceError,
    SalesforceOpportunity,
    SalesforceRateLimited,
    to_18_char_id,
)
from psplan.audit import ChangeSource
from psplan.fiscal import quarter_code
from psplan.queue import WriteStatus
from psplan.weblinks import is_web_url, web_url_or_empty

logger = logging.getLogger(__name__)

PULL_KINDS = (SyncKind.SALESFORCE_FULL, SyncKind.SALESFORCE_INCREMENTAL)
SALESFORCE_KINDS = (*PULL_KINDS, SyncKind.SALESFORCE_OUTBOX)
APPLY_BATCH = 2000  # one query page: the database work follows the network lazily
# SystemModstamp is stamped when a Salesforce transaction starts, so a long transaction can
# commit a record older than the newest one we already saw; re-reading a window catches it.
DEFAULT_OVERLAP = timedelta(minutes=5)
# REQUEST_LIMIT_EXCEEDED is a rolling 24-hour org limit: asking again soon only burns more of it.
DEFAULT_RATE_LIMIT_BACKOFF = timedelta(minutes=30)
_CENTS = Decimal("0.01")
_HISTORY = {
    "close_date": "CloseDate",
    "stage_name": "StageName",
    "engagement_manager_id": "EngagementManager",
    "em_confidence": "EMConfidence",
    "em_confidence_rationale": "EMConfidenceRationale",
    "scoping_issue_link": "ScopingIssueLink",
}
_PS_FIELD_ATTNAMES = {"engagement_manager": "engagement_manager_id"}


class SalesforceDisabled(SalesforceError):
    """Salesforce sync is switched off (no SALESFORCE_INSTANCE_URL or credentials)."""


class SalesforceBackingOff(SalesforceRateLimited):
    """A recent REQUEST_LIMIT_EXCEEDED: PS Plan does not ask Salesforce again until the backoff ends."""


@dataclass
class PullResult:
    """A finished pull: its SyncRun and the 18-character ids of opportunities created or changed."""

    run: SyncRun
    changed_ids: set[str] = field(default_factory=set)


def overlap() -> timedelta:
    return timedelta(seconds=getattr(settings, "SALESFORCE_SYNC_OVERLAP_SECONDS", DEFAULT_OVERLAP.seconds))


def rate_limit_backoff() -> timedelta:
    seconds = getattr(settings, "SALESFORCE_RATE_LIMIT_BACKOFF_SECONDS", DEFAULT_RATE_LIMIT_BACKOFF.seconds)
    return timedelta(seconds=seconds)


def backoff_until(*, now: datetime | None = None) -> datetime | None:
    """When the latest REQUEST_LIMIT_EXCEEDED backoff ends, if it has not ended yet."""
    now = now or timezone.now()
    last = (
        SyncRun.objects.filter(kind__in=SALESFORCE_KINDS, counts__rate_limited=True)
        .aggregate(last=Max("finished_at"))
        .get("last")
    )
    if last is None or last + rate_limit_backoff() <= now:
        return None
    return last + rate_limit_backoff()


def check_backoff() -> None:
    """Raise SalesforceBackingOff while a rate-limit backoff runs; costs no API request."""
    until = backoff_until()
    if until is not None:
        raise SalesforceBackingOff(
            "Salesforce's API request limit was exceeded recently; PS Plan waits until "
            f"{until:%Y-%m-%d %H:%M:%S %Z} before asking again"
        )


def record_api_usage(
    counts: Counter, client: SalesforceClient | None, error: BaseException | None = None
) -> dict[str, object]:
    """A Salesforce run's counts with its requests and API usage; a rate limit starts a backoff."""
    values: dict[str, object] = dict(counts)
    if client is not None:
        values["requests"] = client.request_count
        if client.api_usage is not None:
            values["api_used"], values["api_limit"] = client.api_usage.used, client.api_usage.limit
    if isinstance(error, SalesforceRateLimited) and not isinstance(error, SalesforceBackingOff):
        values["rate_limited"] = True
    return values


def rate_limit_error(error: BaseException) -> BaseException:
    """The error as people should read it: a rate limit says how long PS Plan backs off."""
    if isinstance(error, SalesforceRateLimited) and not isinstance(error, SalesforceBackingOff):
        return SalesforceRateLimited(f"{error} — PS Plan backs off for {rate_limit_backoff()}")
    return error


# --------------------------------------------------------------------------- the pull


def pull_opportunities(
    *,
    full: bool = False,
    extra_ids: Iterable[str] = (),
    progress: Callable[[int], None] | None = None,
    client: SalesforceClient | None = None,
) -> PullResult:
    """Mirror eligible opportunities (and `extra_ids`) from Salesforce; records a SyncRun.

    Raises SalesforceDisabled when Salesforce is not configured, and any SalesforceError after
    recording it on the run. `progress` is called with the number of records each batch mirrored.
    """
    if not settings.SALESFORCE_ENABLED:
        raise SalesforceDisabled("Salesforce sync is disabled: set SALESFORCE_INSTANCE_URL and a token")
    since = None if full else _incremental_start()
    counts = Counter(dict.fromkeys(("fetched", "created", "updated", "unchanged"), 0))
    with SyncRun.running(
        SyncKind.SALESFORCE_FULL if since is None else SyncKind.SALESFORCE_INCREMENTAL
    ) as run:
        run.high_water_mark = SyncRun.objects.high_water_mark(PULL_KINDS)
        result = PullResult(run=run)
        try:
            check_backoff()
            client = client or SalesforceClient.from_settings()
            records = _remote_records(client, since=since, extra_ids=extra_ids, counts=counts, run=run)
            for batch in _batches(records, APPLY_BATCH):
                result.changed_ids |= apply_records(batch, counts=counts)
                if progress is not None:
                    progress(len(batch))
        except SalesforceBackingOff as exc:
            run.finish(counts=counts, error=exc, status=SyncStatus.SKIPPED)
            raise
        except Exception as exc:  # Salesforce's or ours: the run must not stay "running"
            run.finish(counts=record_api_usage(counts, client, exc), error=rate_limit_error(exc))
            raise
        run.finish(counts=record_api_usage(counts, client))
    return result


def _incremental_start() -> datetime | None:
    mark = SyncRun.objects.high_water_mark(PULL_KINDS)
    return None if mark is None else mark - overlap()


def _remote_records(
    client: SalesforceClient,
    *,
    since: datetime | None,
    extra_ids: Iterable[str],
    counts: Counter,
    run: SyncRun,
) -> Iterator[SalesforceOpportunity]:
    """The eligible opportunities (changed since `since`), then the referenced ones not yet seen."""
    names = client.field_names
    eligible = f"{names['engagement_manager_id']} != null OR {names['scoping_issue_link']} != null"
    seen: set[str] = set()
    for record in client.iter_opportunities(modified_since=since, where=eligible):
        seen.add(record.id[:15])
        # Only the main query covers every eligible record up to its stamps, so only it moves the mark.
        if run.high_water_mark is None or record.system_modstamp > run.high_water_mark:
            run.high_water_mark = record.system_modstamp
        counts["fetched"] += 1
        yield record
    wanted = _referenced_ids(extra_ids, counts)
    found = seen.copy()
    for ids, modified_since in _by_id_plan(wanted - seen, since=since):
        for record in client.iter_opportunities_by_id(ids, modified_since=modified_since):
            found.add(record.id[:15])
            counts["fetched"] += 1
            counts["fetched_by_id"] += 1
            yield record
    if since is None:
        counts["referenced_missing"] = len(wanted - found)


def _referenced_ids(extra_ids: Iterable[str], counts: Counter) -> set[str]:
    """The 15-character forms of well-formed ids; a typo in a description must not break the pull."""
    wanted = set()
    for each in extra_ids:
        try:
            wanted.add(to_18_char_id(each)[:15])
        except ValueError:
            counts["referenced_malformed"] += 1
    counts["referenced"] = len(wanted)
    return wanted


def _by_id_plan(ids15: set[str], *, since: datetime | None) -> list[tuple[list[str], datetime | None]]:
    """Full: fetch them all. Incremental: new ones whatever their age, and changed ones that the
    main query does not cover (open, and with neither an EM nor a scoping link).

    A closed opportunity only referenced from an issue rarely changes again, and one that loses its
    EM and link in Salesforce drops out of the main query; the periodic full pull catches both, and
    incremental pulls stay at a request or two.
    """
    if since is None or not ids15:
        return [(sorted(ids15), None)] if ids15 else []
    rows = list(
        _local_by_id15(ids15).values_list(
            "salesforce_id", "is_closed", "engagement_manager_id", "scoping_issue_link"
        )
    )
    uncovered = {sid[:15] for sid, closed, em, link in rows if not closed and em is None and not link}
    known = {row[0][:15] for row in rows}
    new = sorted(each for each in ids15 if each not in known)
    return [(ids, mark) for ids, mark in ((new, None), (sorted(uncovered), since)) if ids]


def _local_by_id15(ids15: Iterable[str]):
    """Local opportunities by 15-char ids; indexed lookups of both the 18-char and 15-char forms."""
    forms = [form for each in ids15 for form in (to_18_char_id(each), each)]
    return Opportunity.objects.filter(salesforce_id__in=forms)


def _batches(records: Iterator[SalesforceOpportunity], size: int) -> Iterator[list[SalesforceOpportunity]]:
    while batch := list(islice(records, size)):
        yield batch


# --------------------------------------------------------------------------- applying records


def apply_records(records: Sequence[SalesforceOpportunity], *, counts: Counter | None = None) -> set[str]:
    """Mirror these Salesforce records (EMs, accounts, opportunities, history); returns changed ids.

    Writes only rows whose values differ, so mirroring unchanged records writes nothing.
    Fields an EM edited in PS Plan that still wait in the outbox keep their local values.
    """
    counts = counts if counts is not None else Counter()
    latest = {record.id[:15]: record for record in records}  # a record met twice: its last version wins
    records = list(latest.values())
    with transaction.atomic():
        ems = _mirror_engagement_managers(records, counts)
        accounts = _mirror_accounts(records, counts)
        return _mirror_opportunities(records, ems=ems, accounts=accounts, counts=counts)


def _mirror_engagement_managers(
    records: Sequence[SalesforceOpportunity], counts: Counter
) -> dict[str, EngagementManager]:
    """EMs by 15-char Salesforce user id: matched by user id, else by email, else created."""
    # One record per user is enough to read the user's name and email.
    people = {r.engagement_manager_id[:15]: r for r in records if r.engagement_manager_id}
    if not people:
        return {}
    everyone = list(EngagementManager.objects.all())  # a team, not a table scan worth avoiding
    by_user = {em.salesforce_user_id[:15]: em for em in everyone if em.salesforce_user_id}
    by_email = {em.email.lower(): em for em in everyone if em.email and not em.salesforce_user_id}
    found, created, updated = {}, [], []
    for id15, record in people.items():
        email = record.engagement_manager_email.strip()
        em = by_user.get(id15)
        if em is None and email:
            em = by_email.pop(email.lower(), None)
        if em is None:
            em = EngagementManager(
                name=record.engagement_manager_name[:200] or email or record.engagement_manager_id,
                email=email[:254],
                salesforce_user_id=record.engagement_manager_id,
            )
            created.append(em)
        elif _update_em(em, record):
            updated.append(em)
        found[id15] = em
    EngagementManager.objects.bulk_create(created)
    EngagementManager.objects.bulk_update(
        updated, ["name", "email", "salesforce_user_id", "gitlab_link_checked_at"]
    )
    counts["ems_created"] += len(created)
    counts["ems_updated"] += len(updated)
    return found


def _update_em(em: EngagementManager, record: SalesforceOpportunity) -> bool:
    before = (em.name, em.email, em.salesforce_user_id)
    if not em.salesforce_user_id:
        em.salesforce_user_id = record.engagement_manager_id or ""
    if record.engagement_manager_name:
        em.name = record.engagement_manager_name[:200]
    email = record.engagement_manager_email.strip()
    if email and email.lower() != em.email.lower():
        em.email = email[:254]
    changed = (em.name, em.email, em.salesforce_user_id) != before
    if changed:
        em.gitlab_link_checked_at = None  # new name or e-mail: worth looking for their GitLab user again
    return changed


def _mirror_accounts(records: Sequence[SalesforceOpportunity], counts: Counter) -> dict[str, Account]:
    """Accounts by 15-char id, with their territory looked up by the Sales Territory's exact name."""
    wanted = {r.account_id[:15]: r for r in records if r.account_id}
    if not wanted:
        return {}
    names = {r.sales_territory for r in wanted.values() if r.sales_territory}
    territories = dict(Territory.objects.filter(name__in=names).values_list("name", "pk"))
    forms = [form for r in wanted.values() for form in (r.account_id, r.account_id[:15])]
    existing = {a.salesforce_id[:15]: a for a in Account.objects.filter(salesforce_id__in=forms)}
    found, created, updated = {}, [], []
    for id15, record in wanted.items():
        values = {
            "salesforce_id": record.account_id,
            "name": record.account_name[:255],
            "sales_territory": record.sales_territory[:255],
            "territory_id": territories.get(record.sales_territory),
        }
        account = existing.get(id15)
        if account is None:
            account = Account(**values)
            created.append(account)
        elif _assign_changes(account, values):
            updated.append(account)
        found[id15] = account
    Account.objects.bulk_create(created)
    Account.objects.bulk_update(updated, ["salesforce_id", "name", "sales_territory", "territory"])
    counts["accounts_created"] += len(created)
    counts["accounts_updated"] += len(updated)
    return found


def _assign_changes(row: Any, values: dict[str, Any], *, keep: Iterable[str] = ()) -> dict[str, Any]:
    """Set the values that differ (except `keep`) on the row; returns {attname: old value}."""
    old = {}
    for name, value in values.items():
        if name not in keep and getattr(row, name) != value:
            old[name] = getattr(row, name)
            setattr(row, name, value)
    return old


def _mirror_opportunities(
    records: Sequence[SalesforceOpportunity],
    *,
    ems: dict[str, EngagementManager],
    accounts: dict[str, Account],
    counts: Counter,
) -> set[str]:
    existing = {o.salesforce_id[:15]: o for o in _local_by_id15(r.id[:15] for r in records)}
    pending = _pending_fields([o.pk for o in existing.values()])
    now = timezone.now()
    created, updated, old_values, fields, changed = [], [], [], {"synced_at"}, set()
    for record in records:
        values = _local_values(record, ems=ems, accounts=accounts)
        opportunity = existing.get(record.id[:15])
        if opportunity is None:
            created.append(Opportunity(**values, synced_at=now))
            changed.add(record.id)
            continue
        old = _assign_changes(opportunity, values, keep=pending.get(opportunity.pk, ()))
        if not old:
            continue
        opportunity.synced_at = now
        old_values.append((opportunity, old))
        fields |= set(old)  # bulk_update takes attnames (account_id) as well as names
        updated.append(opportunity)
        changed.add(record.id)
    Opportunity.objects.bulk_create(created, batch_size=500)
    Opportunity.objects.bulk_update(updated, sorted(fields), batch_size=500)
    history = _history_rows(old_values)
    OpportunityChange.objects.bulk_create(history, batch_size=500)
    counts.update(
        created=len(created),
        updated=len(updated),
        unchanged=len(records) - len(created) - len(updated),
        history=len(history),
    )
    return changed


def _pending_fields(opportunity_pks: list[int]) -> dict[int, set[str]]:
    """Attnames an EM changed in PS Plan that have not reached Salesforce yet, per opportunity."""
    if not opportunity_pks:
        return {}
    pending: dict[int, set[str]] = {}
    writes = SalesforceWrite.objects.filter(opportunity_id__in=opportunity_pks, status=WriteStatus.PENDING)
    for opportunity_id, changes in writes.values_list("opportunity_id", "changes"):
        names = {_PS_FIELD_ATTNAMES.get(name, name) for name in changes}
        pending.setdefault(opportunity_id, set()).update(names)
    return pending


def _local_values(
    record: SalesforceOpportunity, *, ems: dict[str, EngagementManager], accounts: dict[str, Account]
) -> dict[str, Any]:
    em = ems.get((record.engagement_manager_id or "")[:15])
    account = accounts.get((record.account_id or "")[:15])
    return {
        "salesforce_id": record.id,
        "name": record.name[:255],
        "account_id": account.pk if account else None,
        "stage_name": record.stage_name[:100],
        "forecast_category": record.forecast_category[:100],
        "is_closed": record.is_closed,
        "is_won": record.is_won,
        "close_date": record.close_date,
        "close_quarter": quarter_code(record.close_date),
        "amount": _cents(record.amount),
        "proserv_amount": _cents(record.proserv_amount),
        "ps_value": _cents(record.ps_value),
        "owner_salesforce_id": record.owner_id or "",
        "owner_name": record.owner_name[:255],
        "engagement_manager_id": em.pk if em else None,
        "em_confidence": em_confidence(record.em_confidence),
        "em_confidence_rationale": record.em_confidence_rationale,
        # Rendered as a link: only http(s) is kept; anything else is kept aside and shown as a problem.
        "scoping_issue_link": web_url_or_empty(record.scoping_issue_link or "")[:500],
        "refused_link": _refused_link(record.scoping_issue_link),
        "system_modstamp": record.system_modstamp,
    }


def _refused_link(link: str | None) -> str:
    """Salesforce's link when PS Plan will not link to it (not http(s)), else empty."""
    text = (link or "").strip()
    return "" if not text or is_web_url(text) else text[:500]


_CONFIDENCE_BY_KEY = {choice.lower(): choice for choice in EMConfidence.values}


def em_confidence(value: str) -> str:
    """Salesforce's picklist value as ours; empty means Grey (the team's default)."""
    return _CONFIDENCE_BY_KEY.get(value.strip().lower(), EMConfidence.GREY)


def _cents(value: Decimal | None) -> Decimal | None:
    # The columns keep two decimals; comparing unrounded values would report a change every time.
    return None if value is None else value.quantize(_CENTS, rounding=ROUND_HALF_UP)


def _history_rows(old_values: list[tuple[Opportunity, dict[str, Any]]]) -> list[OpportunityChange]:
    """CloseDate, StageName, EM and EM Confidence changes, dated by Salesforce's SystemModstamp."""
    em_pks = {
        pk
        for opportunity, old in old_values
        if "engagement_manager_id" in old
        for pk in (old["engagement_manager_id"], opportunity.engagement_manager_id)
        if pk
    }
    names = dict(EngagementManager.objects.filter(pk__in=em_pks).values_list("pk", "name")) if em_pks else {}
    rows = []
    for opportunity, old in old_values:
        for attname in old.keys() & _HISTORY.keys():
            before, after = old[attname], getattr(opportunity, attname)
            if attname == "engagement_manager_id":
                before, after = names.get(before), names.get(after)
            rows.append(
                OpportunityChange(
                    opportunity=opportunity,
                    source=ChangeSource.SALESFORCE,
                    field=_HISTORY[attname],
                    old_value=str(before or ""),
                    new_value=str(after or ""),
                    changed_at=opportunity.system_modstamp or timezone.now(),
                )
            )
    return rows
