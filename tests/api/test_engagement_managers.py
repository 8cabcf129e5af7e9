"""GET /api/v1/engagement-managers/: who they are, where they work, how many open issues they hold."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opportunities.choices import AssignmentRole, Segment
from opportunities.models import TerritoryAssignment
from scoping.choices import IssueState
from tests.factories import EngagementManagerFactory, ScopingIssueFactory, TerritoryFactory

pytestmark = pytest.mark.django_db

LIST = "/api/v1/engagement-managers/"


def _by_name(response) -> dict[str, dict]:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == len(body["results"])
    return {item["name"]: item for item in body["results"]}


def test_an_engagement_manager_has_territories_segments_and_open_issue_count(reader_api):
    em = EngagementManagerFactory(name="Ann Lee", gitlab_username="alee", email="ann@example.com")
    east = TerritoryFactory(name="AMER - East", segment=Segment.ENT_EAST)
    smb = TerritoryFactory(name="AMER - SMB", segment=Segment.SMB)
    TerritoryAssignment.objects.create(territory=east, engagement_manager=em)
    TerritoryAssignment.objects.create(territory=smb, engagement_manager=em, role=AssignmentRole.BACKUP)
    ScopingIssueFactory(engagement_manager=em)
    ScopingIssueFactory(engagement_manager=em)
    ScopingIssueFactory(engagement_manager=em, state=IssueState.CLOSED, labels=["proposal::Closed_Won"])
    ScopingIssueFactory(engagement_manager=em, removed_at=timezone.now())
    assert _by_name(reader_api.get(LIST))["Ann Lee"] == {
        "username": "alee",
        "name": "Ann Lee",
        "email": "ann@example.com",
        "active": True,
        "territories": [
            {"name": "AMER - East", "segment": "Ent_EAST", "role": "primary"},
            {"name": "AMER - SMB", "segment": "SMB", "role": "backup"},
        ],
        "segments": ["Ent_EAST", "SMB"],
        "open_issue_count": 2,
    }


def test_an_unlinked_engagement_manager_has_no_username_and_no_issues(reader_api):
    EngagementManagerFactory(name="New Hire", gitlab_username="", email="")
    item = _by_name(reader_api.get(LIST))["New Hire"]
    assert (item["username"], item["email"], item["territories"], item["open_issue_count"]) == (
        None,
        None,
        [],
        0,
    )


def test_the_active_filter(reader_api):
    EngagementManagerFactory(name="Here")
    EngagementManagerFactory(name="Gone", active=False)
    assert set(_by_name(reader_api.get(f"{LIST}?active=true"))) == {"Here"}
    assert set(_by_name(reader_api.get(f"{LIST}?active=false"))) == {"Gone"}
    response = reader_api.get(f"{LIST}?active=sometimes")
    assert (response.status_code, list(response.json())) == (400, ["active"])


def test_the_list_is_ordered_by_name(reader_api):
    for name in ["Cy", "Al", "Bo"]:
        EngagementManagerFactory(name=name)
    assert [item["name"] for item in reader_api.get(LIST).json()["results"]] == ["Al", "Bo", "Cy"]


def _count_queries(client, path: str) -> int:
    cache.clear()  # so both counts include the token lookup
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def _em_with_work():
    em = EngagementManagerFactory()
    TerritoryAssignment.objects.create(territory=TerritoryFactory(), engagement_manager=em)
    ScopingIssueFactory(engagement_manager=em)


def test_the_query_count_does_not_grow_with_rows(reader_api):
    _em_with_work()
    one = _count_queries(reader_api, LIST)
    for _ in range(49):
        _em_with_work()
    assert _count_queries(reader_api, LIST) == one
    assert len(reader_api.get(LIST).json()["results"]) == 50


def test_the_list_answers_csv_with_territories_in_one_cell(reader_api):
    em = EngagementManagerFactory(name="Priya Raman", gitlab_username="praman")
    TerritoryAssignment.objects.create(engagement_manager=em, territory=TerritoryFactory(name="APAC - ANZ"))
    response = reader_api.get("/api/v1/engagement-managers/?format=csv")
    header, row = list(csv.reader(io.StringIO(response.content.decode())))
    cells = dict(zip(header, row, strict=True))
    assert (cells["Name"], cells["GitLab username"], cells["Territories"]) == (
        "Priya Raman",
        "praman",
        "APAC - ANZ (primary)",
    )
