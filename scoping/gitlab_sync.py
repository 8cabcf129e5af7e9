"""The GitLab mirror: full and incremental syncs of scoping issues, and storing what GitLab says.

Every path that learns an issue's state — the syncs, the webhook, the outbox's answers — stores it
through `store_issues`, which diffs against the stored row and writes only what differs, in bulk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import islice
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from opportunities.choices import SyncKind
from opportunities.models import SyncRun
from psplan.audit import ChangeSource
from psplan.queue import WriteStatus
from psplan.weblinks import web_url_or_empty
from scoping.gitlab_client import GitLabClient, GitLabIssue
from scoping.models import DataQualityProblem, GitLabWrite, IssueChange, ScopingIssue
from scoping.services import derived_label_fields, refresh_issues

T = TypeVar("T")

BATCH_SIZE = 500
GITLAB_KINDS = (SyncKind.GITLAB_FULL, SyncKind.GITLAB_INCREMENTAL)
MIRROR_FIELDS = (
    "iid",
    "title",
    "description",
    "web_url",
    "state",
    "labels",
    "assignee_usernames",
    "author_username",
    "created_at",
    "updated_at",
    "closed_at",
)
LABEL_FIELDS = ("stage", "close_qtr", "segment", "em_status", "public_sector")
COMPARED_FIELDS = (*MIRROR_FIELDS, *LABEL_FIELDS, "last_activity_at", "removed_at")
# own_write_* are left out on purpose: only the write-back, which knows what it wrote, sets them.
UPSERT_FIELDS = (*COMPARED_FIELDS, "synced_at")
# Changes GitLab reports that people see in an issue's history.
HISTORY_FIELDS = ("stage", "segment", "em_status", "close_qtr", "state")
# GitLab stamps a note's issue a moment after the note itself; webhooks carry whole seconds.
OWN_WRITE_SLACK = timedelta(seconds=1)


@dataclass
class IngestCounts:
    """What storing a stream of issues did; saved on the SyncRun."""

    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    restored: int = 0
    removed: int = 0
    skipped_pending_write: int = 0
    skipped_older: int = 0
    not_scoping: int = 0
    high_water_mark: datetime | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if k != "high_water_mark"}


# --- Syncs -------------------------------------------------------------------------------------


def sync_issues(
    *,
    full: bool = False,
    client: GitLabClient | None = None,
    progress: Callable[[int], None] | None = None,
) -> SyncRun:
    """Mirror GitLab's scoping issues: all of them, or those changed since the last successful sync.

    An incremental sync without an earlier success is a full one. Raises GitLabError after
    recording the failure on the run.
    """
    client = client or GitLabClient.from_settings()
    since = None if full else incremental_start()
    counts, requests_before = IngestCounts(), client.request_count
    with SyncRun.running(SyncKind.GITLAB_INCREMENTAL if since else SyncKind.GITLAB_FULL) as run:
        try:
            if since is None:
                _full_listing(client, counts, progress)
            else:
                issues = client.iter_issues(label=settings.GITLAB_SCOPING_LABEL, updated_after=since)
                for batch in _batched(issues, BATCH_SIZE):
                    store_issues(batch, counts=counts)
                    _advance(progress, len(batch))
        finally:
            run.counts = {**counts.as_dict(), "requests": client.request_count - requests_before}
        # Nothing new seen: keep the old mark (the overlap already went back from it).
        run.high_water_mark = counts.high_water_mark or (
            since + timedelta(seconds=settings.GITLAB_SYNC_OVERLAP) if since else None
        )
        run.finish()
    return run


def incremental_start() -> datetime | None:
    """Where an incremental sync starts: the high-water mark of the last success, minus the overlap."""
    mark = SyncRun.objects.high_water_mark(GITLAB_KINDS)
    return mark - timedelta(seconds=settings.GITLAB_SYNC_OVERLAP) if mark else None


def _full_listing(client: GitLabClient, counts: IngestCounts, progress: Callable[[int], None] | None) -> None:
    # Ordered by creation: an issue edited while we page does not shift others past us.
    issues = client.iter_issues(label=settings.GITLAB_SCOPING_LABEL, order_by="created_at")
    seen: set[int] = set()
    for batch in _batched(issues, BATCH_SIZE):
        store_issues(batch, counts=counts)
        seen.update(issue.id for issue in batch)
        _advance(progress, len(batch))
    _mark_missing(client, seen, counts)


def _mark_missing(client: GitLabClient, seen: set[int], counts: IngestCounts) -> None:
    """Mark current issues the listing did not return, after asking GitLab about them once more."""
    current = ScopingIssue.objects.current().values_list("gitlab_id", "iid")
    missing = {gid: iid for gid, iid in current.iterator(chunk_size=2000) if gid not in seen}
    if not missing:
        return
    # A deletion mid-listing can shift an issue past us: whatever GitLab still has is stored instead.
    for batch in _batched(iter(sorted(missing.values())), 100):
        found = list(client.iter_issues(label=None, iids=batch))
        store_issues(found, counts=counts)
        for issue in found:
            if has_scoping_label(issue.labels):
                missing.pop(issue.id, None)
    mark_removed(gitlab_ids=list(missing), counts=counts)


def mark_removed(*, gitlab_ids: list[int], counts: IngestCounts | None = None) -> int:
    """Mark issues as gone from GitLab (or from the scoping label); their problems go with them."""
    now, marked = timezone.now(), 0
    for chunk in _batched(iter(gitlab_ids), BATCH_SIZE):
        with transaction.atomic():
            marked += ScopingIssue.objects.filter(gitlab_id__in=chunk, removed_at__isnull=True).update(
                removed_at=now, synced_at=now
            )
            DataQualityProblem.objects.filter(issue__gitlab_id__in=chunk).delete()
    if counts is not None:
        counts.removed += marked
    return marked


# --- Storing what GitLab says ------------------------------------------------------------------


def has_scoping_label(labels: Iterable[str]) -> bool:
    """Whether an issue is a scoping issue; GitLab matches label filters without regard to case."""
    wanted = settings.GITLAB_SCOPING_LABEL.casefold()
    return any(label.casefold() == wanted for label in labels)


def store_issues(
    issues: Iterable[GitLabIssue],
    *,
    counts: IngestCounts | None = None,
    actors: dict[int, str] | None = None,
) -> set[int]:
    """Upsert issues as GitLab shows them, writing only rows that differ; returns their GitLab ids.

    An issue with a write still in the queue is left to the write-back, which stores GitLab's answer
    and knows which updated_at its own write produced. `actors` names who changed an issue (GitLab id →
    username, from a webhook) for its history.
    """
    counts = counts if counts is not None else IngestCounts()
    latest: dict[int, GitLabIssue] = {}
    for issue in issues:
        counts.fetched += 1
        if issue.id not in latest or issue.updated_at >= latest[issue.id].updated_at:
            latest[issue.id] = issue
    if not latest:
        return set()
    now = timezone.now()
    with transaction.atomic():
        stored = _stored_rows(list(latest))
        pending = set(
            GitLabWrite.objects.filter(status=WriteStatus.PENDING, issue__gitlab_id__in=list(latest))
            .values_list("issue__gitlab_id", flat=True)
            .distinct()
        )
        rows = []
        for issue in latest.values():
            mark = counts.high_water_mark
            counts.high_water_mark = issue.updated_at if mark is None else max(mark, issue.updated_at)
            if issue.id in pending and issue.id in stored:
                counts.skipped_pending_write += 1
                continue
            row = _row_to_write(issue, stored.get(issue.id), counts, now=now)
            if row is not None:
                rows.append(row)
        ScopingIssue.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["gitlab_id"], update_fields=list(UPSERT_FIELDS)
        )
        _record_history(rows, stored, actors or {})
    written = {row.gitlab_id for row in rows}
    if written:
        created = written - stored.keys()
        refresh_issues(issues=ScopingIssue.objects.filter(gitlab_id__in=written), quiet_ids=created)
        gone = [row.gitlab_id for row in rows if row.removed_at is not None]
        if gone:  # problems of an issue that left the scoping label are nobody's to fix
            DataQualityProblem.objects.filter(issue__gitlab_id__in=gone).delete()
    return written


def _record_history(
    rows: list[ScopingIssue], stored: dict[int, dict[str, object]], actors: dict[int, str]
) -> None:
    """What GitLab changed on issues PS Plan already had, as history rows."""
    changed = [row for row in rows if row.gitlab_id in stored]
    if not changed:
        return
    pks = dict(
        ScopingIssue.objects.filter(gitlab_id__in=[row.gitlab_id for row in changed]).values_list(
            "gitlab_id", "pk"
        )
    )
    IssueChange.objects.bulk_create(
        IssueChange(
            issue_id=pks[row.gitlab_id],
            field=name,
            old_value=str(stored[row.gitlab_id][name] or ""),
            new_value=str(getattr(row, name) or ""),
            changed_at=row.updated_at,
            source=ChangeSource.GITLAB,
            actor_name=actors.get(row.gitlab_id, ""),
        )
        for row in changed
        for name in HISTORY_FIELDS
        if stored[row.gitlab_id][name] != getattr(row, name)
    )


@dataclass(frozen=True)
class Answer:
    """GitLab's issue after a delivery: `own_from` is its updated_at after the first request of PS
    Plan's write (None when PS Plan wrote nothing and this is just GitLab's state); `seen_before` is
    the updated_at GitLab showed just before PS Plan wrote, when that was a person's edit."""

    issue: GitLabIssue
    own_from: datetime | None = None
    seen_before: datetime | None = None


def store_answers(answers: Iterable[Answer]) -> None:
    """Store GitLab's answers to the write-back in one go: PS Plan's writes are not activity; a
    person's edit just before one is."""
    latest = {answer.issue.id: answer for answer in answers}
    if not latest:
        return
    now = timezone.now()
    fields = [*MIRROR_FIELDS, *LABEL_FIELDS, "last_activity_at", "removed_at", "synced_at"]
    with transaction.atomic():
        rows = list(ScopingIssue.objects.select_for_update().filter(gitlab_id__in=list(latest)))
        for row in rows:
            _apply_answer(row, latest[row.gitlab_id], now=now)
        ScopingIssue.objects.bulk_update(rows, [*fields, "own_write_from", "own_write_updated_at"])
    refresh_issues(issues=ScopingIssue.objects.filter(pk__in=[row.pk for row in rows]))


def _apply_answer(row: ScopingIssue, answer: Answer, *, now: datetime) -> None:
    issue, stored = answer.issue, {name: getattr(row, name) for name in _STORED}
    if answer.seen_before is not None:
        row.last_activity_at = activity_after(stored, answer.seen_before)
    if answer.own_from is None:
        row.last_activity_at = activity_after(
            {**stored, "last_activity_at": row.last_activity_at}, issue.updated_at
        )
    if issue.updated_at >= row.updated_at:  # else a webhook already stored something newer
        for name, value in mirror_values(issue, stored).items():
            setattr(row, name, value)
        row.removed_at = None if has_scoping_label(issue.labels) else row.removed_at or now
    if answer.own_from is not None:
        row.own_write_from, row.own_write_updated_at = answer.own_from, issue.updated_at
    row.synced_at = now


_STORED = ("gitlab_id", *COMPARED_FIELDS, "own_write_from", "own_write_updated_at")


def _stored_rows(gitlab_ids: list[int]) -> dict[int, dict[str, object]]:
    # Locked until the batch is written, so a write-back answer cannot land between our read and write.
    rows = ScopingIssue.objects.select_for_update().filter(gitlab_id__in=gitlab_ids).values_list(*_STORED)
    return {row[0]: dict(zip(_STORED, row, strict=True)) for row in rows}


def mirror_values(issue: GitLabIssue, stored: dict[str, object] | None = None) -> dict[str, object]:
    """The columns that copy GitLab, plus those PS Plan reads off the labels."""
    author = issue.author_username or (stored or {}).get("author_username") or ""
    values: dict[str, object] = {
        "iid": issue.iid,
        "title": issue.title[:500],
        "description": issue.description,
        # Rendered as a link on every page: only http(s) is kept (an empty one is a data-quality problem).
        "web_url": web_url_or_empty(issue.web_url)[:500],
        "state": issue.state,
        "labels": list(issue.labels),
        "assignee_usernames": list(issue.assignee_usernames),
        "author_username": author,
        "created_at": issue.created_at,
        "updated_at": issue.updated_at,
        "closed_at": issue.closed_at,
    }
    values.update(_derived(issue.labels, issue.state))
    return values


@lru_cache(maxsize=4096)
def _derived(labels: tuple[str, ...], state: str) -> dict[str, object]:
    # A project has a few hundred label combinations: parse each once, not once per issue.
    return derived_label_fields(labels=labels, state=state)


def _row_to_write(
    issue: GitLabIssue,
    stored: dict[str, object] | None,
    counts: IngestCounts,
    *,
    now: datetime,
) -> ScopingIssue | None:
    """The row to upsert for one issue, or None when nothing would change."""
    labelled = has_scoping_label(issue.labels)
    if stored is None and not labelled:
        counts.not_scoping += 1
        return None
    if stored is not None and issue.updated_at < stored["updated_at"]:  # type: ignore[operator]
        counts.skipped_older += 1  # a webhook or the write-back already stored something newer
        return None
    values = mirror_values(issue, stored)
    values["last_activity_at"] = activity_after(stored, issue.updated_at)
    values["removed_at"] = None if labelled else (stored or {}).get("removed_at") or now
    if stored is not None and all(values[name] == stored[name] for name in COMPARED_FIELDS):
        counts.unchanged += 1
        return None
    if stored is None:
        counts.created += 1
    elif stored["removed_at"] and labelled:
        counts.restored += 1
    elif values["removed_at"] and not stored["removed_at"]:
        counts.removed += 1
    else:
        counts.updated += 1
    return ScopingIssue(gitlab_id=issue.id, synced_at=now, **values)


def activity_after(stored: dict[str, object] | None, updated_at: datetime) -> datetime:
    """Last activity once GitLab shows `updated_at`: PS Plan's own writes never count."""
    if stored is None:
        return updated_at
    last: datetime = stored["last_activity_at"]  # type: ignore[assignment]
    if is_own_write(updated_at, stored["own_write_from"], stored["own_write_updated_at"]):  # type: ignore[arg-type]
        return last
    return max(last, updated_at)


def is_own_write(updated_at: datetime, own_from: datetime | None, own_until: datetime | None) -> bool:
    """Whether GitLab's updated_at is one that PS Plan's latest write produced (its PUT or its note)."""
    if own_until is None:
        return False
    # Webhook payloads carry whole seconds; the API carries milliseconds.
    start = (own_from or own_until).replace(microsecond=0)
    return start <= updated_at <= own_until + OWN_WRITE_SLACK


# --- Small helpers -----------------------------------------------------------------------------


def _batched(items: Iterator[T] | Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _advance(progress: Callable[[int], None] | None, count: int) -> None:
    if progress is not None:
        progress(count)
