from __future__ import annotations

from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import ExpressionWrapper, Q
from django.utils import timezone

from opportunities.choices import Segment
from opportunities.models import EngagementManager, Opportunity
from psplan.audit import ChangeRecord
from psplan.fiscal import add_months
from psplan.queue import QueuedWrite
from scoping.choices import EMStatus, IssueState, Outcome, ProblemKind, Stage


def stale_cutoff(as_of: datetime) -> datetime:
    """Issues whose last activity is before this moment have gone stale by `as_of`."""
    return add_months(as_of, -settings.PSPLAN_STALE_AFTER_MONTHS)


_CURRENT = Q(removed_at__isnull=True)
_OPEN = _CURRENT & Q(state=IssueState.OPENED)
_UNTRIAGED = _OPEN & (Q(engagement_manager__isnull=True) | Q(segment=""))


# One definition of each condition, for filters (stale(), going_stale()) and the flags of with_staleness();
# ScopingIssue.is_stale() and is_going_stale() make the same comparisons on one row.
def _stale(as_of: datetime) -> Q:
    return (
        _OPEN
        & Q(last_activity_at__lt=stale_cutoff(as_of))
        & ~Q(keep_open_until__gte=timezone.localdate(as_of))
    )


def _warning_ends(as_of: datetime) -> datetime:
    """Issues that go stale before this moment are flagged for their EM at `as_of`."""
    return as_of + timedelta(days=settings.PSPLAN_STALE_WARNING_DAYS)


def _going_stale(as_of: datetime) -> Q:
    window_end = _warning_ends(as_of)
    return (
        _OPEN
        & Q(last_activity_at__gte=stale_cutoff(as_of), last_activity_at__lt=stale_cutoff(window_end))
        & ~Q(keep_open_until__gte=timezone.localdate(window_end))
    )


def goes_stale_soon(*, last_activity_at: datetime, keep_open_until: date | None, as_of: datetime) -> bool:
    """_going_stale() for one open issue's values, for pages that read rows rather than filter on it: the
    same comparisons with the same cut-offs, so that the page and the SQL agree even at a month's end."""
    window_end = _warning_ends(as_of)
    return stale_cutoff(as_of) <= last_activity_at < stale_cutoff(window_end) and not _kept_open(
        keep_open_until, on=window_end
    )


def _kept_open(keep_open_until: date | None, *, on: datetime) -> bool:
    """`Q(keep_open_until__gte=timezone.localdate(on))` on one row's value."""
    return keep_open_until is not None and keep_open_until >= timezone.localdate(on)


class ScopingIssueQuerySet(models.QuerySet):
    def current(self) -> ScopingIssueQuerySet:
        """Issues still in GitLab with the scoping label."""
        return self.filter(_CURRENT)

    def open(self) -> ScopingIssueQuerySet:
        return self.filter(_OPEN)

    def closed(self) -> ScopingIssueQuerySet:
        return self.current().filter(state=IssueState.CLOSED)

    def for_em(self, engagement_manager: EngagementManager) -> ScopingIssueQuerySet:
        return self.filter(engagement_manager=engagement_manager)

    def overridden(self, *, as_of: datetime) -> ScopingIssueQuerySet:
        return self.filter(keep_open_until__gte=timezone.localdate(as_of))

    def stale(self, *, as_of: datetime) -> ScopingIssueQuerySet:
        """Open issues with no activity for the configured months and no live keep-open override."""
        return self.filter(_stale(as_of))

    def not_stale(self, *, as_of: datetime) -> ScopingIssueQuerySet:
        return self.exclude(pk__in=self.stale(as_of=as_of).values("pk"))

    def going_stale(self, *, as_of: datetime) -> ScopingIssueQuerySet:
        """Open issues that go stale within the warning window: flagged for their EM."""
        return self.filter(_going_stale(as_of))

    def with_staleness(self, *, as_of: datetime) -> ScopingIssueQuerySet:
        """Annotate `stale_now` and `going_stale_now` for tables that highlight them. Conditions on the row
        itself, not EXISTS subqueries: the same answers for a fraction of the ORM's work per query."""
        return self.annotate(
            stale_now=ExpressionWrapper(_stale(as_of), output_field=models.BooleanField()),
            going_stale_now=ExpressionWrapper(_going_stale(as_of), output_field=models.BooleanField()),
        )

    def untriaged(self) -> ScopingIssueQuerySet:
        """Open issues nobody has given an engagement manager and a segment yet."""
        return self.open().filter(_UNTRIAGED)

    def with_untriaged(self) -> ScopingIssueQuerySet:
        """Annotate `untriaged_now`, the condition of untriaged(), for pages that sort issues into lists."""
        return self.annotate(untriaged_now=ExpressionWrapper(_UNTRIAGED, output_field=models.BooleanField()))


class ScopingIssue(models.Model):
    """A GitLab scoping issue (label `Services Calculator`) as PS Plan understands it."""

    gitlab_id = models.PositiveBigIntegerField(unique=True)
    iid = models.PositiveIntegerField(unique=True)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    web_url = models.URLField(max_length=500, blank=True, help_text="Empty when GitLab's was not http(s)")
    state = models.CharField(max_length=10, choices=IssueState.choices, default=IssueState.OPENED)
    labels = models.JSONField(default=list, blank=True, help_text="Labels exactly as GitLab has them")
    assignee_usernames = models.JSONField(default=list, blank=True)
    author_username = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(help_text="GitLab's updated_at")
    closed_at = models.DateTimeField(null=True, blank=True)

    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.OPEN)
    close_qtr = models.CharField(max_length=4, blank=True, help_text="Fiscal quarter, e.g. Q323")
    segment = models.CharField(max_length=20, choices=Segment.choices, blank=True)
    em_status = models.CharField(max_length=10, choices=EMStatus.choices, blank=True)
    public_sector = models.BooleanField(default=False)
    engagement_manager = models.ForeignKey(
        EngagementManager,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="scoping_issues",
    )
    opportunity = models.ForeignKey(
        Opportunity, null=True, blank=True, on_delete=models.SET_NULL, related_name="scoping_issues"
    )

    last_activity_at = models.DateTimeField(help_text="Latest human change; PS Plan's writes never count")
    own_write_from = models.DateTimeField(
        null=True,
        blank=True,
        help_text="GitLab's updated_at after the first request of PS Plan's latest write",
    )
    own_write_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="GitLab's updated_at after PS Plan's latest write"
    )
    keep_open_until = models.DateField(null=True, blank=True)
    keep_open_set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    keep_open_set_at = models.DateTimeField(null=True, blank=True)
    keep_open_reason = models.TextField(blank=True)
    removed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the issue vanished from GitLab or lost the scoping label",
    )
    synced_at = models.DateTimeField(default=timezone.now)

    objects = ScopingIssueQuerySet.as_manager()

    class Meta:
        ordering = ["-iid"]
        indexes = [
            models.Index(fields=["state", "stage"]),
            models.Index(fields=["close_qtr"]),
            models.Index(fields=["last_activity_at"]),
            models.Index(fields=["updated_at"]),
            # The boards show issues closed in the last 90 days beside the open ones: without it, every
            # board read every closed issue there ever was.
            models.Index(fields=["closed_at"]),
            # Triage reads the untriaged issues oldest first: a few hundred among thousands of open ones.
            models.Index(fields=["created_at", "id"], condition=_UNTRIAGED, name="scoping_untriaged_by_age"),
        ]

    def __str__(self) -> str:
        return f"#{self.iid} {self.title}"

    @property
    def outcome(self) -> Outcome | None:
        return {Stage.CLOSED_WON: Outcome.WON, Stage.CLOSED_LOST: Outcome.LOST}.get(self.stage)

    @property
    def goes_stale_at(self) -> datetime:
        return add_months(self.last_activity_at, settings.PSPLAN_STALE_AFTER_MONTHS)

    def has_live_override(self, *, as_of: datetime) -> bool:
        return _kept_open(self.keep_open_until, on=as_of)

    # The conditions of _stale() and _going_stale() on this row (see goes_stale_soon()).
    def is_stale(self, *, as_of: datetime) -> bool:
        return (
            self._is_open
            and self.last_activity_at < stale_cutoff(as_of)
            and not self.has_live_override(as_of=as_of)
        )

    def is_going_stale(self, *, as_of: datetime) -> bool:
        return self._is_open and goes_stale_soon(
            last_activity_at=self.last_activity_at, keep_open_until=self.keep_open_until, as_of=as_of
        )

    @property
    def _is_open(self) -> bool:
        return self.removed_at is None and self.state == IssueState.OPENED


class RuleAction(models.Model):
    """A closing rule that fired on an issue; the reason key makes each firing happen once."""

    class Rule(models.TextChoices):
        OPPORTUNITY_WON = "opportunity_won", "Opportunity closed won"
        OPPORTUNITY_LOST = "opportunity_lost", "Opportunity closed lost"
        STALE = "stale", "No activity"

    issue = models.ForeignKey(ScopingIssue, on_delete=models.CASCADE, related_name="rule_actions")
    rule = models.CharField(max_length=20, choices=Rule.choices)
    reason = models.CharField(max_length=100, help_text="What fired it, e.g. the date it went stale")
    close_qtr = models.CharField(max_length=4, blank=True)
    applied_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-applied_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["issue", "rule", "reason"], name="unique_rule_firing")]

    def __str__(self) -> str:
        return f"#{self.issue.iid} {self.rule} ({self.reason})"


class DataQualityProblem(models.Model):
    """Something in the mirrored data a person should fix; recomputed on every sync."""

    issue = models.ForeignKey(
        ScopingIssue, null=True, blank=True, on_delete=models.CASCADE, related_name="problems"
    )
    opportunity = models.ForeignKey(
        Opportunity, null=True, blank=True, on_delete=models.CASCADE, related_name="problems"
    )
    kind = models.CharField(max_length=40, choices=ProblemKind.choices)
    labels = models.JSONField(default=list, blank=True)
    message = models.TextField()
    detected_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kind", "-detected_at"]
        indexes = [models.Index(fields=["kind"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"


class GitLabWrite(QueuedWrite):
    """Queue row: what a person or a rule wants of a GitLab issue; the labels to send are worked out
    at delivery, against the labels the issue has then (scoping.labels.change_for_intent)."""

    record_field = "issue"

    issue = models.ForeignKey(ScopingIssue, on_delete=models.CASCADE, related_name="writes")
    intent = models.JSONField(
        default=dict,
        blank=True,
        help_text="Wanted values of stage, segment, em_status, close_qtr, state and assignee_ids; "
        "a missing key leaves that part alone, null clears it",
    )
    note = models.TextField(blank=True, help_text="Comment to post with the change")
    note_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="GitLab's id of the posted note, so a retry never posts it twice"
    )
    rule_action = models.ForeignKey(
        RuleAction, null=True, blank=True, on_delete=models.SET_NULL, related_name="writes"
    )
    response_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="GitLab's updated_at after this write's PUT"
    )

    class Meta(QueuedWrite.Meta):
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"GitLab write #{self.pk} for #{self.issue.iid} ({self.status})"

    @property
    def summary(self) -> str:
        """What the write wants, for people: `stage SOW_WIP, closed, comment`."""
        parts = [
            f"{name.replace('_', ' ')} {value or 'cleared'}"
            for name, value in self.intent.items()
            if name not in ("state", "assignee_ids")
        ]
        if "state" in self.intent:
            parts.append(str(self.intent["state"]))
        if "assignee_ids" in self.intent:
            parts.append("assignee" if self.intent["assignee_ids"] else "unassigned")
        if self.note:
            parts.append("comment")
        return ", ".join(parts)


class IssueChange(ChangeRecord):
    """History of a scoping issue's PS fields, from PS Plan (with its write-back) and from GitLab."""

    issue = models.ForeignKey(ScopingIssue, on_delete=models.CASCADE, related_name="changes")
    write = models.ForeignKey(
        GitLabWrite,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="history",
        help_text="The write-back that carries a change made in PS Plan",
    )
    note = models.TextField(blank=True, help_text="Why: a keep-open reason, a rule's comment")

    class Meta(ChangeRecord.Meta):
        indexes = [models.Index(fields=["issue", "-changed_at"])]

    def __str__(self) -> str:
        return f"#{self.issue.iid} {super().__str__()}"


class WebhookDelivery(models.Model):
    """One GitLab webhook delivery; the unique key makes a redelivery a no-op."""

    delivery_key = models.CharField(max_length=200, unique=True)
    event = models.CharField(max_length=100)
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event} {self.delivery_key}"


class SyncLock(models.Model):
    """A named lease that one background sync holds at a time, claimed by a conditional UPDATE."""

    name = models.CharField(max_length=50, unique=True)
    owner = models.CharField(max_length=100, blank=True, help_text="Who holds it: host, process and a nonce")
    acquired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Empty when free; past when its holder died without releasing it"
    )

    def __str__(self) -> str:
        return f"{self.name} lock ({self.owner or 'free'})"


class DigestSubscription(models.Model):
    """A user who asked for "My work" by e-mail every week."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="digest")
    subscribed_at = models.DateTimeField(default=timezone.now)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Weekly digest for {self.user}"
