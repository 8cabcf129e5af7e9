from __future__ import annotations

from django.db import models


class Segment(models.TextChoices):
    """Sales segments; the values are the words of the `Segment::` labels (see scoping.labels)."""

    ENT_APAC = "Ent_APAC", "Enterprise APAC"
    ENT_EAST = "Ent_EAST", "Enterprise East"
    ENT_WEST = "Ent_WEST", "Enterprise West"
    ENT_EMEA = "Ent_EMEA", "Enterprise EMEA"
    MM_APAC = "MM_APAC", "Mid-Market APAC"
    MM_EAST = "MM_East", "Mid-Market East"
    MM_EMEA = "MM_EMEA", "Mid-Market EMEA"
    MM_WEST = "MM_West", "Mid-Market West"
    SMB = "SMB", "SMB"


class EMConfidence(models.TextChoices):
    """The EM's view of whether the opportunity closes won in its stated timeframe."""

    GREY = "Grey", "Grey — no visibility"
    RED = "Red", "Red — won't close in time"
    AMBER = "Amber", "Amber — will close, maybe later"
    GREEN = "Green", "Green — will close in time"

    @classmethod
    def needing_rationale(cls) -> frozenset[str]:
        return frozenset({cls.RED, cls.AMBER})


class AssignmentRole(models.TextChoices):
    PRIMARY = "primary", "Primary"
    BACKUP = "backup", "Backup"


class SyncKind(models.TextChoices):
    GITLAB_FULL = "gitlab_full", "GitLab full sync"
    GITLAB_INCREMENTAL = "gitlab_incremental", "GitLab incremental sync"
    SALESFORCE_FULL = "salesforce_full", "Salesforce full sync"
    SALESFORCE_INCREMENTAL = "salesforce_incremental", "Salesforce incremental sync"
    RULES = "rules", "Closing rules"
    GITLAB_OUTBOX = "gitlab_outbox", "GitLab write-back"
    SALESFORCE_OUTBOX = "salesforce_outbox", "Salesforce write-back"
    EM_LINKING = "em_linking", "Linking EMs to GitLab users"


class SyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    ABANDONED = "abandoned", "Abandoned"
