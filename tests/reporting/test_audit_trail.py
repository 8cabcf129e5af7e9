"""The audit trail: every change, who made it, from where, before and after, and whether it reached the other
system; staff only, filtered by issue, opportunity and person, exported as CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opportunities.models import OpportunityChange
from opportunities.services import update_ps_fields
from psplan.queue import WriteStatus
from scoping.models import GitLabWrite, IssueChange
from scoping.services import set_issue_stage
from tests.factories import OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db
URL = "/reports/audit/"
SC = "Services Calculator"


@pytest.fixture
def history(em_user):
    """An EM's stage move (refused by GitLab), a change seen in GitLab, and an EM's confidence edit."""
    opportunity = OpportunityFactory(name="Acme - Migration", salesforce_id="006000000000777AAA")
    issue = ScopingIssueFactory(iid=42, labels=[SC, "Open"], opportunity=opportunity)
    set_issue_stage(issue=issue, stage="SOW_WIP", actor=em_user)
    GitLabWrite.objects.update(status=WriteStatus.FAILED, last_error="403 Forbidden - not allowed")
    IssueChange.objects.create(
        issue=issue,
        field="em_status",
        old_value="",
        new_value="ToDo",
        source="gitlab",
        actor_name="dana.w",
        changed_at=timezone.now() - timedelta(days=1),
    )
    update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green")
    return issue, opportunity


def test_staff_see_every_change_with_who_where_and_its_delivery(admin_client, history):
    page = admin_client.get(URL).content.decode()

    assert "3 changes" in page
    assert "Open" in page and "SOW_WIP" in page and "em" in page  # the EM who moved it, by username
    assert "403 Forbidden - not allowed" in page and "failed-tag" in page
    assert "<td>dana.w</td>\n      <td>GitLab</td>" in page  # named by the other system
    assert "Acme - Migration" in page and "pending-tag" in page


def test_readers_and_engagement_managers_are_refused(reader_client, em_client, history):
    assert reader_client.get(URL).status_code == 403
    assert em_client.get(URL).status_code == 403


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("issue=42", {"stage", "em_status", "EMConfidence"}),  # the issue and its opportunity
        ("opportunity=Acme", {"stage", "em_status", "EMConfidence"}),
        ("opportunity=006000000000777", {"stage", "em_status", "EMConfidence"}),
        ("person=dana.w", {"em_status"}),
        ("person=em", {"stage", "EMConfidence"}),
        ("source=gitlab", {"em_status"}),
        ("issue=43", set()),
    ],
)
def test_the_trail_narrows_to_an_issue_an_opportunity_a_person_or_a_source(
    admin_client, history, query, fields
):
    response = admin_client.get(f"{URL}?{query}")
    assert {row["field"] for row in response.context["page"]} == fields


def test_bad_filters_say_so_and_show_everything(admin_client, history):
    response = admin_client.get(f"{URL}?issue=abc&source=martians")
    assert response.status_code == 200
    assert "issue:" in response.content.decode() and response.context["page"].paginator.count == 3


def test_the_trail_exports_as_csv_with_the_filters(admin_client, history):
    response = admin_client.get(f"{URL}?issue=42&csv=1")
    header, *rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert header == [
        "When",
        "Record",
        "Field",
        "Before",
        "After",
        "Who",
        "From",
        "Delivery",
        "Delivery error",
    ]
    by_field = {row[2]: row for row in rows}
    assert by_field["stage"][3:9] == [
        "Open",
        "SOW_WIP",
        "em",
        "PS Plan page",
        "failed",
        "403 Forbidden - not allowed",
    ]
    assert by_field["em_status"][5:7] == ["dana.w", "GitLab"]


def test_the_trail_costs_the_same_queries_however_long_it_is(admin_client, history, em_user):
    issue, opportunity = history

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            admin_client.get(URL)
        return len(captured)

    few = queries()
    for n in range(30):
        OpportunityChange.objects.create(
            opportunity=opportunity, field="StageName", new_value=f"S{n}", source="salesforce"
        )
        set_issue_stage(issue=issue, stage="Approved" if n % 2 else "SOW_WIP", actor=em_user)
    assert queries() == few
