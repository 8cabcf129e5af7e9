"""Delivery of queued GitLab writes (GitLabWrite rows), exactly once, in order per issue.

A write is claimed with a conditional UPDATE (a lease), so two workers never send the same row.
Before sending, the issue is read again and the change recomputed against GitLab's labels as they
are now: a label someone added meanwhile survives, scoped exclusivity holds against what is really
there, and a retry of a write GitLab already applied sends nothing. GitLab's answer is stored on the
local row, so it ends equal to GitLab.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import SyncRun
from scoping import labels as label_rules
from scoping.choices import IssueState, WriteStatus
from scoping.gitlab_client import GitLabClient, GitLabIssue, GitLabNote, GitLabRefused, GitLabUnavailable
from scoping.gitlab_sync import mark_removed, store_answer
from scoping.labels import LabelChange
from scoping.models import GitLabWrite

logger = logging.getLogger(__name__)

DELIVERED, FAILED, RETRY = "delivered", "failed", "retrying"
# GitLab answers 409 when two edits of one issue collide: worth another try, not a refusal.
_TRY_AGAIN_STATUSES = frozenset({409, 423})


class _Refused(Exception):
    """GitLab would refuse this write, or did: it fails for good with this message."""


def deliver_pending_writes(
    *, client: GitLabClient | None = None, patient: bool = True, batch: int = 50
) -> int:
    """Send due writes to GitLab, oldest first and in order per issue; returns how many were delivered.

    Not `patient`, each call to GitLab is tried once: for a delivery inside a person's request,
    where the outbox's own backoff is the better retry.
    """
    if client is None and not settings.GITLAB_ENABLED:
        return 0
    courier = _Courier(client or GitLabClient.from_settings(max_retries=None if patient else 0))
    while not courier.outage and (due := _due_write_ids(batch)):
        for write_id in due:
            write = _claim(write_id)
            if write is not None:
                courier.deliver(write)
            if courier.outage:
                break  # GitLab is down: the rest wait for their next attempt
    courier.finish()
    return courier.counts[DELIVERED]


def rebased_change(write: GitLabWrite, labels: Iterable[str]) -> LabelChange:
    """The write's label change, recomputed against the labels the issue has now."""
    current = list(labels)
    change = LabelChange()
    for label in write.add_labels:
        change = change | _change_for(current, label)
    kept_removals = tuple(label for label in write.remove_labels if label in current)
    return change | LabelChange(remove=kept_removals)


def _change_for(current: list[str], label: str) -> LabelChange:
    """Adding one label with the exclusivity of its scope, as the edit services do."""
    parsed = label_rules.parse_labels([label])
    if parsed.workflow_stage is not None:
        return label_rules.change_for_stage(current, parsed.workflow_stage)
    if parsed.segment is not None:
        return label_rules.change_for_segment(current, parsed.segment)
    if parsed.em_status is not None:
        return label_rules.change_for_em_status(current, parsed.em_status)
    if parsed.close_qtr:
        return label_rules.change_for_close_qtr(current, parsed.close_qtr)
    return LabelChange(add=() if label in current else (label,))


def _due_write_ids(limit: int) -> list[int]:
    """Pending writes whose time has come and which wait for no earlier write to the same issue."""
    earlier = GitLabWrite.objects.filter(
        issue=OuterRef("issue"), status=WriteStatus.PENDING, pk__lt=OuterRef("pk")
    )
    due = GitLabWrite.objects.filter(status=WriteStatus.PENDING, next_attempt_at__lte=timezone.now())
    return list(due.exclude(Exists(earlier)).order_by("pk").values_list("pk", flat=True)[:limit])


def _claim(write_id: int) -> GitLabWrite | None:
    """Take a lease on one write; None when another worker has it (or it is no longer due)."""
    now = timezone.now()
    claimed = GitLabWrite.objects.filter(
        pk=write_id, status=WriteStatus.PENDING, next_attempt_at__lte=now
    ).update(
        next_attempt_at=now + timedelta(seconds=settings.GITLAB_OUTBOX_LEASE), attempts=F("attempts") + 1
    )
    return GitLabWrite.objects.select_related("issue").get(pk=write_id) if claimed else None


def retry_delay(attempts: int) -> timedelta:
    """Capped exponential backoff with jitter for a write GitLab could not take."""
    ceiling = min(
        settings.GITLAB_OUTBOX_RETRY_CAP, settings.GITLAB_OUTBOX_RETRY_BASE * 2 ** max(0, attempts - 1)
    )
    return timedelta(seconds=ceiling * random.uniform(0.75, 1.0))


class _Courier:
    """One delivery run: the client, the project's labels (read once), what happened, the SyncRun."""

    def __init__(self, client: GitLabClient) -> None:
        self.client = client
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.outage = ""
        self.run: SyncRun | None = None
        self._labels: frozenset[str] | None = None
        self._bot: str | None = None
        self._requests_before = client.request_count

    def deliver(self, write: GitLabWrite) -> None:
        """Deliver one claimed write and record how it went."""
        self.run = self.run or SyncRun.objects.create(kind=SyncKind.GITLAB_OUTBOX)
        current: GitLabIssue | None = None
        try:
            current = self.client.get_issue(write.issue.iid)
            answer, sent = self._send(write, current)
            # A retry may find the state an earlier attempt of this write left: that is not a person.
            seen = None if current.updated_at == write.response_updated_at else current.updated_at
            store_answer(answer=answer, own_write=sent, seen_before=seen)
            self._done(write, WriteStatus.DELIVERED, response_updated_at=answer.updated_at)
        except GitLabUnavailable as exc:
            self._retry(write, str(exc), outage=True)
        except GitLabRefused as exc:
            if exc.status in _TRY_AGAIN_STATUSES:
                self._retry(write, str(exc), outage=False)
            else:
                self._refused(write, str(exc), current, gone=exc.status == 404 and current is None)
        except _Refused as exc:
            self._refused(write, str(exc), current)
        except Exception as exc:  # a bug must not lose the write: it is retried like an outage
            logger.exception("Delivering GitLab write #%s failed", write.pk)
            self._retry(write, f"{type(exc).__name__}: {exc}", outage=False)

    def _send(self, write: GitLabWrite, current: GitLabIssue) -> tuple[GitLabIssue, bool]:
        """One PUT with what is still to do, then the note; returns GitLab's answer and whether we wrote."""
        change = rebased_change(write, current.labels)
        self._check_labels_exist(change.add)
        state_event = self._state_event(write.state_event, current.state)
        assignees = write.assignee_ids
        if assignees is not None and sorted(assignees) == sorted(current.assignee_ids):
            assignees = None
        answer, sent = current, False
        if change or state_event or assignees is not None:
            answer = self.client.update_issue(
                current.iid,
                add_labels=change.add,
                remove_labels=change.remove,
                state_event=state_event,
                assignee_ids=assignees,
            )
            GitLabWrite.objects.filter(pk=write.pk).update(response_updated_at=answer.updated_at)
            sent = True
        if write.note and write.note_id is None:
            note = self._posted_before(write) or self.client.create_note(current.iid, write.note)
            GitLabWrite.objects.filter(pk=write.pk).update(note_id=note.id)
            answer, sent = self.client.get_issue(current.iid), True  # the note moved updated_at
        return answer, sent

    @staticmethod
    def _state_event(wanted: str, state: str) -> str | None:
        if wanted == "close" and state == IssueState.OPENED:
            return "close"
        if wanted == "reopen" and state == IssueState.CLOSED:
            return "reopen"
        return None

    def _check_labels_exist(self, labels: Iterable[str]) -> None:
        """PS Plan creates only the canonical label of a new fiscal quarter: GitLab would silently make a stray one from a typo."""
        wanted = list(labels)
        if not wanted:
            return
        if self._labels is None:
            self._labels = self.client.project_label_names()
        missing = [label for label in wanted if label not in self._labels]
        for label in [label for label in missing if label_rules.is_new_quarter_label(label)]:
            self.client.create_label(label)
            self._labels = self._labels | {label}
            missing.remove(label)
        if missing:
            near = {name.casefold(): name for name in self._labels}
            hints = [f" (GitLab has {near[m.casefold()]!r})" if m.casefold() in near else "" for m in missing]
            names = ", ".join(f"{m!r}{hint}" for m, hint in zip(missing, hints, strict=True))
            raise _Refused(
                f"Label {names} does not exist in the GitLab project; PS Plan creates only new close_qtr labels. "
                "Create it in GitLab, then make the change again."
            )

    def _posted_before(self, write: GitLabWrite) -> GitLabNote | None:
        """The note an earlier attempt posted when its answer was lost on the way back."""
        if write.attempts <= 1:
            return None
        if self._bot is None:
            self._bot = self.client.current_user().username
        notes = self.client.recent_notes(write.issue.iid)
        return next((n for n in notes if n.body == write.note and n.author_username == self._bot), None)

    def _done(self, write: GitLabWrite, status: str, **fields: object) -> None:
        GitLabWrite.objects.filter(pk=write.pk).update(status=status, delivered_at=timezone.now(), **fields)
        self.counts[DELIVERED if status == WriteStatus.DELIVERED else FAILED] += 1

    def _retry(self, write: GitLabWrite, error: str, *, outage: bool) -> None:
        next_attempt = timezone.now() + retry_delay(write.attempts)
        GitLabWrite.objects.filter(pk=write.pk).update(next_attempt_at=next_attempt, last_error=error)
        self.counts[RETRY] += 1
        self.errors.append(
            f"#{write.issue.iid}: {error} (attempt {write.attempts}, next {_hhmm(next_attempt)})"
        )
        if outage:
            self.outage = error

    def _refused(
        self, write: GitLabWrite, error: str, current: GitLabIssue | None, *, gone: bool = False
    ) -> None:
        GitLabWrite.objects.filter(pk=write.pk).update(status=WriteStatus.FAILED, last_error=error)
        self.counts[FAILED] += 1
        self.errors.append(f"#{write.issue.iid}: {error}")
        # The local row showed the edit as made: it goes back to what GitLab really has.
        if current is not None:
            store_answer(answer=current, own_write=False)
        elif gone:
            mark_removed(gitlab_ids=[write.issue.gitlab_id])

    def finish(self) -> None:
        """Close the run's record, if anything was attempted."""
        if self.run is None:
            return
        self.run.finished_at = timezone.now()
        self.run.status = SyncStatus.FAILED if self.errors else SyncStatus.SUCCEEDED
        self.run.counts = {DELIVERED: 0, FAILED: 0, RETRY: 0, **self.counts}
        self.run.counts["requests"] = self.client.request_count - self._requests_before
        self.run.error = "\n".join(self.errors)
        self.run.save(update_fields=["finished_at", "status", "counts", "error"])


def _hhmm(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M:%S")
