"""The GitLab stand-in, and settings that point PS Plan at it, for the mirror's tests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from psplan.fiscal import add_months, quarter_code
from scoping.gitlab_client import GitLabClient
from scoping.labels import canonical_labels, close_qtr_label
from tests.standins.gitlab import GitLabStandIn

GITLAB_TOKEN = "glpat-mirror-test"
GITLAB_PROJECT = "group/sub/ps-plan"
GITLAB_PROJECT_ID = 4242
SCOPING = "Services Calculator"
WEBHOOK_SECRET = "hook-secret-123"


def recently(**delta: float) -> datetime:
    """A moment shortly before now: recent enough that no closing rule fires on it."""
    return datetime.now(UTC) - timedelta(**delta)


def recent_close_qtr_labels() -> list[str]:
    """`close_qtr::` labels of this fiscal quarter and the four before, as a real project has them."""
    today = datetime.now(UTC).date()
    return [close_qtr_label(quarter_code(add_months(today, -3 * n))) for n in range(5)]


@pytest.fixture
def gitlab_server() -> Iterator[GitLabStandIn]:
    """A GitLab project that has every label PS Plan writes, and the scoping label."""
    with GitLabStandIn(
        token=GITLAB_TOKEN, project_path=GITLAB_PROJECT, project_id=GITLAB_PROJECT_ID
    ) as server:
        for label in [SCOPING, *canonical_labels(), *recent_close_qtr_labels()]:
            server.add_label(label)
        yield server


@pytest.fixture
def gitlab_on(settings, gitlab_server: GitLabStandIn) -> GitLabStandIn:
    """PS Plan configured for the stand-in, with retries fast enough for tests."""
    settings.GITLAB_URL = gitlab_server.url
    settings.GITLAB_TOKEN = GITLAB_TOKEN
    settings.GITLAB_ENABLED = True
    settings.GITLAB_PROJECT = GITLAB_PROJECT
    settings.GITLAB_SCOPING_LABEL = SCOPING
    settings.GITLAB_TIMEOUT = 2
    settings.GITLAB_MAX_RETRIES = 2
    settings.GITLAB_BACKOFF_BASE = 0.01
    settings.GITLAB_BACKOFF_CAP = 0.05
    settings.GITLAB_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.SALESFORCE_ENABLED = False
    return gitlab_server


@pytest.fixture
def gitlab_client(gitlab_on: GitLabStandIn) -> Iterator[GitLabClient]:
    with GitLabClient.from_settings() as client:
        yield client


def seed(server: GitLabStandIn, count: int, *, start: datetime | None = None, **fields) -> list[int]:
    """`count` scoping issues updated a minute apart, oldest first; returns their iids."""
    start = start or recently(days=3)
    labels = fields.pop("labels", [SCOPING, "Open"])
    return [
        server.add_issue(
            title=f"Scoping customer {n}",
            labels=labels,
            created_at=start + timedelta(minutes=n),
            updated_at=start + timedelta(minutes=n),
            **fields,
        )["iid"]
        for n in range(count)
    ]
