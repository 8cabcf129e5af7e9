from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Max, Q
from django.utils import timezone

from opportunities.choices import AssignmentRole, EMConfidence, Segment, SyncKind, SyncStatus
from psplan import heartbeat
from psplan.audit import ChangeRecord
from psplan.queue import QueuedWrite

logger = logging.getLogger(__name__)


class EngagementManagerQuerySet(models.QuerySet):
    def active(self) -> EngagementManagerQuerySet:
        return self.filter(active=True)

    def unlinked(self) -> EngagementManagerQuerySet:
        """EMs PS Plan cannot match to a GitLab user: an admin has to link them."""
        return self.filter(gitlab_username="")


class EngagementManager(models.Model):
    """A Salesforce user named in `Engagement_Manager__c`, linked to a GitLab user and a login."""

    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    salesforce_user_id = models.CharField(max_length=18, blank=True)
    gitlab_username = models.CharField(max_length=255, blank=True)
    gitlab_user_id = models.PositiveBigIntegerField(null=True, blank=True)
    gitlab_link_problem = models.TextField(
        blank=True, help_text="Why PS Plan could not link this EM to a GitLab user by itself"
    )
    gitlab_link_candidates = models.JSONField(
        default=list, blank=True, help_text="GitLab users that matched ambiguously: [{id, username, name}]"
    )
    gitlab_link_checked_at = models.DateTimeField(null=True, blank=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="engagement_manager",
    )
    active = models.BooleanField(default=True)

    objects = EngagementManagerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["salesforce_user_id"],
                condition=~Q(salesforce_user_id=""),
                name="unique_em_salesforce_user",
            ),
            models.UniqueConstraint(
                fields=["gitlab_username"],
                condition=~Q(gitlab_username=""),
                name="unique_em_gitlab_username",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Territory(models.Model):
    """A Sales Territory exactly as Salesforce's Account shows it, and the segment it belongs to."""

    name = models.CharField(max_length=255, unique=True)
    segment = models.CharField(max_length=20, choices=Segment.choices)
    engagement_managers = models.ManyToManyField(
        EngagementManager, through="TerritoryAssignment", related_name="territories"
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "territories"

    def __str__(self) -> str:
        return self.name


class TerritoryAssignment(models.Model):
    """Which EM works a territory; triage suggests the primary, the backup balances load."""

    territory = models.ForeignKey(Territory, on_delete=models.CASCADE, related_name="assignments")
    engagement_manager = models.ForeignKey(
        EngagementManager, on_delete=models.CASCADE, related_name="assignments"
    )
    role = models.CharField(max_length=10, choices=AssignmentRole.choices, default=AssignmentRole.PRIMARY)

    class Meta:
        ordering = ["territory__name", "role"]
        constraints = [
            models.UniqueConstraint(
                fields=["territory", "engagement_manager"], name="unique_territory_assignment"
            ),
            models.UniqueConstraint(
                fields=["territory"],
                condition=Q(role=AssignmentRole.PRIMARY),
                name="one_primary_em_per_territory",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.territory} → {self.engagement_manager} ({self.get_role_display()})"


class Account(models.Model):
    salesforce_id = models.CharField(max_length=18, unique=True)
    name = models.CharField(max_length=255)
    sales_territory = models.CharField(max_length=255, blank=True)
    territory = models.ForeignKey(
        Territory, null=True, blank=True, on_delete=models.SET_NULL, related_name="accounts"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def salesforce_url_prefix() -> str:
    """An opportunity's page in Salesforce, up to its id (rows of a `values()` query need no instances)."""
    base = settings.SALESFORCE_INSTANCE_URL or "https://login.salesforce.com"
    return f"{base}/lightning/r/Opportunity/"


def opportunity_url(salesforce_id: str) -> str:
    """An opportunity's page in Salesforce."""
    return f"{salesforce_url_prefix()}{salesforce_id}/view"


class OpportunityQuerySet(models.QuerySet):
    def open(self) -> OpportunityQuerySet:
        return self.filter(is_closed=False)

    def for_em(self, engagement_manager: EngagementManager) -> OpportunityQuerySet:
        return self.filter(engagement_manager=engagement_manager)


class Opportunity(models.Model):
    """A Salesforce opportunity with its Professional Services section."""

    salesforce_id = models.CharField(max_length=18, unique=True)
    name = models.CharField(max_length=255)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="opportunities"
    )
    stage_name = models.CharField(max_length=100, blank=True)
    forecast_category = models.CharField(max_length=100, blank=True)
    is_closed = models.BooleanField(default=False)
    is_won = models.BooleanField(default=False)
    close_date = models.DateField(null=True, blank=True)
    close_quarter = models.CharField(
        max_length=4, blank=True, db_index=True, help_text="Fiscal quarter of CloseDate, e.g. Q325"
    )
    amount = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    proserv_amount = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    ps_value = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)
    owner_salesforce_id = models.CharField(max_length=18, blank=True)
    owner_name = models.CharField(max_length=255, blank=True)
    engagement_manager = models.ForeignKey(
        EngagementManager,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="opportunities",
    )
    em_confidence = models.CharField(max_length=10, choices=EMConfidence.choices, default=EMConfidence.GREY)
    em_confidence_rationale = models.TextField(blank=True)
    scoping_issue_link = models.URLField(max_length=500, blank=True)
    refused_link = models.TextField(
        blank=True, help_text="Salesforce's Scoping Issue Link when it was not an http(s) URL (not linked)"
    )
    system_modstamp = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    objects = OpportunityQuerySet.as_manager()

    class Meta:
        ordering = ["close_date", "name"]
        verbose_name_plural = "opportunities"
        indexes = [models.Index(fields=["system_modstamp"])]

    def __str__(self) -> str:
        return self.name

    @property
    def ps_amount(self) -> Decimal | None:
        """The quote's PS amount, else the EM's forecast PS value, else the opportunity amount."""
        for value in (self.proserv_amount, self.ps_value, self.amount):
            if value is not None:
                return value
        return None

    @property
    def salesforce_url(self) -> str:
        return opportunity_url(self.salesforce_id)


class OpportunityChange(ChangeRecord):
    """History of an opportunity's fields: CloseDate, StageName and the PS section, from either side."""

    opportunity = models.ForeignKey(Opportunity, on_delete=models.CASCADE, related_name="changes")
    write = models.ForeignKey(
        "SalesforceWrite",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="history",
        help_text="The write-back that carries a change made in PS Plan",
    )

    class Meta(ChangeRecord.Meta):
        indexes = [models.Index(fields=["opportunity", "field", "-changed_at"])]

    def __str__(self) -> str:
        return f"{self.opportunity_id} {super().__str__()}"


class SalesforceWrite(QueuedWrite):
    """Queue row: PS-field values waiting to reach Salesforce (written with the local change)."""

    record_field = "opportunity"

    opportunity = models.ForeignKey(Opportunity, on_delete=models.CASCADE, related_name="writes")
    changes = models.JSONField(help_text="Local field name → the value Salesforce should get")
    base_modstamp = models.DateTimeField(
        null=True,
        blank=True,
        help_text="SystemModstamp the edit was based on (If-Unmodified-Since)",
    )

    class Meta(QueuedWrite.Meta):
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"Salesforce write #{self.pk} ({self.status})"

    @property
    def summary(self) -> str:
        """What the write sets, for people: `em confidence Red, em confidence rationale`."""
        return ", ".join(
            name.replace("_", " ") + (f" {value}" if name == "em_confidence" else "")
            for name, value in self.changes.items()
        )


class SyncRunQuerySet(models.QuerySet):
    def last_successes(self) -> dict[str, datetime]:
        """Kind → when its latest successful run finished."""
        rows = self.filter(status=SyncStatus.SUCCEEDED).values("kind").annotate(last=Max("finished_at"))
        return {row["kind"]: row["last"] for row in rows if row["last"]}

    def high_water_mark(self, kinds: tuple[str, ...]) -> datetime | None:
        """The latest remote update time that a successful run of these kinds saw."""
        runs = self.filter(kind__in=kinds, status=SyncStatus.SUCCEEDED)
        return runs.aggregate(mark=Max("high_water_mark"))["mark"]

    def abandon_dead(self, *, process: str = "") -> int:
        """Mark runs whose process stopped beating, or of a process known dead, as abandoned."""
        now = timezone.now()
        silent_since = now - timedelta(seconds=settings.PSPLAN_SYNC_LOCK_TTL)
        dead = Q(heartbeat_at__lt=silent_since) | (Q(owner=process) if process else Q(pk__in=[]))
        return self.filter(dead, status=SyncStatus.RUNNING).update(
            status=SyncStatus.ABANDONED,
            finished_at=now,
            error="The process running it stopped (killed or lost) before it finished",
        )


class SyncRun(models.Model):
    """A record of every background run: what it did, how it ended, and why it failed."""

    kind = models.CharField(max_length=30, choices=SyncKind.choices)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    counts = models.JSONField(default=dict, blank=True)
    high_water_mark = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Latest remote update time seen; the next incremental starts here",
    )
    error = models.TextField(blank=True)
    owner = models.CharField(max_length=100, blank=True, help_text="The process running it")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of its process while running"
    )

    objects = SyncRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["kind", "status", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def duration(self) -> timedelta | None:
        return self.finished_at - self.started_at if self.finished_at else None

    @classmethod
    @contextmanager
    def running(cls, kind: SyncKind | str) -> Iterator[SyncRun]:
        """Record a run for the block: it beats while running, and fails with the error that escapes."""
        cls.objects.abandon_dead()
        run = cls.objects.create(kind=kind, owner=heartbeat.process_name(), heartbeat_at=timezone.now())
        with heartbeat.beating(run.beat):
            try:
                yield run
            except BaseException as exc:
                if run.status == SyncStatus.RUNNING:
                    run.finish(error=exc)
                raise
        if run.status == SyncStatus.RUNNING:
            run.finish()

    @classmethod
    def skipped(cls, kind: SyncKind | str, reason: str) -> SyncRun:
        """Record a run that did not happen, and why."""
        now = timezone.now()
        run = cls.objects.create(
            kind=kind, status=SyncStatus.SKIPPED, started_at=now, finished_at=now, error=reason
        )
        run.log()
        return run

    def beat(self) -> None:
        SyncRun.objects.filter(pk=self.pk, status=SyncStatus.RUNNING).update(heartbeat_at=timezone.now())

    def finish(
        self,
        *,
        counts: dict | None = None,
        error: BaseException | str | None = None,
        status: SyncStatus | str | None = None,
    ) -> SyncRun:
        """Close the record: counts, how it ended (failed when there is an error) and why."""
        if counts is not None:
            self.counts = dict(counts)
        self.finished_at = timezone.now()
        self.status = status or (SyncStatus.FAILED if error else SyncStatus.SUCCEEDED)
        self.error = str(error or "")
        self.save(update_fields=["counts", "finished_at", "status", "error", "high_water_mark"])
        self.log()
        return self

    def log(self) -> None:
        """One structured line per run, for whoever reads the logs rather than the sync page."""
        took = self.duration.total_seconds() * 1000 if self.duration is not None else 0
        counts = " ".join(f"{key}={value}" for key, value in sorted(self.counts.items()))
        level = logging.WARNING if self.status in (SyncStatus.FAILED, SyncStatus.ABANDONED) else logging.INFO
        logger.log(
            level,
            "sync_run kind=%s status=%s duration_ms=%d %s error=%r",
            self.kind,
            self.status,
            took,
            counts,
            self.error[:300],
        )
