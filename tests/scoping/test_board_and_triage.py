"""The EM board (columns, moving cards) and the triage queue (suggestions, one-step triage)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opportunities.choices import AssignmentRole, Segment
from opportunities.models import TerritoryAssignment
from scoping.choices import IssueState, Stage
from scoping.models import GitLabWrite
from tests.factories import (
    AccountFactory,
    EngagementManagerFactory,
    OpportunityFactory,
    ScopingIssueFactory,
    TerritoryFactory,
)

pytestmark = pytest.mark.django_db
SC = "Services Calculator"


def _column(response, stage) -> list[str]:
    return [
        issue.title
        for column_stage, issues in response.context["columns"]
        if column_stage == stage
        for issue in issues
    ]


def test_an_em_sees_their_own_board_by_default(em_client, em_user):
    mine = em_user.engagement_manager
    ScopingIssueFactory(title="mine", engagement_manager=mine, labels=[SC, "proposal::SOW_WIP"])
    ScopingIssueFactory(
        title="theirs", engagement_manager=EngagementManagerFactory(), labels=[SC, "proposal::SOW_WIP"]
    )
    response = em_client.get("/boards/")
    assert response.context["board_em"] == mine
    assert _column(response, Stage.SOW_WIP) == ["mine"]


def test_board_of_everyone_shows_recently_closed_but_not_old_closed(reader_client):
    now = timezone.now()
    ScopingIssueFactory(
        title="recent",
        state=IssueState.CLOSED,
        closed_at=now - timedelta(days=10),
        labels=[SC, "proposal::Closed_Won"],
    )
    ScopingIssueFactory(
        title="old",
        state=IssueState.CLOSED,
        closed_at=now - timedelta(days=200),
        labels=[SC, "proposal::Closed_Won"],
    )
    response = reader_client.get("/boards/?engagement_manager=all")
    assert _column(response, Stage.CLOSED_WON) == ["recent"]
    assert "Move to" not in response.content.decode()


def test_unknown_board_owner_is_404(reader_client):
    assert reader_client.get("/boards/?engagement_manager=nobody").status_code == 404


def test_moving_a_card_queues_the_gitlab_change_and_redraws_the_board(em_client):
    issue = ScopingIssueFactory(title="card", labels=[SC, "proposal::Strawman_WIP"])
    response = em_client.post(
        f"/issues/{issue.iid}/stage/?engagement_manager=all",
        {"stage": "Estimate_Feedback"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert _column(response, Stage.ESTIMATE_FEEDBACK) == ["card"]
    assert GitLabWrite.objects.get().intent == {"stage": "Estimate_Feedback", "state": "opened"}


def test_readers_cannot_move_cards(reader_client):
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    assert reader_client.post(f"/issues/{issue.iid}/stage/", {"stage": "SOW_WIP"}).status_code == 403
    assert not GitLabWrite.objects.exists()


def test_a_move_to_an_unknown_stage_is_refused(em_client):
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    response = em_client.post(f"/issues/{issue.iid}/stage/", {"stage": "Nope"})
    assert response.status_code == 400
    assert "Unknown stage 'Nope'" in response.content.decode()
    assert not GitLabWrite.objects.exists()


def test_board_query_count_does_not_grow_with_cards(reader_client):
    ScopingIssueFactory(engagement_manager=EngagementManagerFactory())
    with CaptureQueriesContext(connection) as one:
        reader_client.get("/boards/?engagement_manager=all")
    for _ in range(30):
        ScopingIssueFactory(engagement_manager=EngagementManagerFactory())
    with CaptureQueriesContext(connection) as many:
        reader_client.get("/boards/?engagement_manager=all")
    assert len(many) == len(one)


def _territory_with(primary, backup=None):
    territory = TerritoryFactory(name="EMEA - Enterprise - DACH", segment=Segment.ENT_EMEA)
    TerritoryAssignment.objects.create(
        territory=territory, engagement_manager=primary, role=AssignmentRole.PRIMARY
    )
    if backup:
        TerritoryAssignment.objects.create(
            territory=territory, engagement_manager=backup, role=AssignmentRole.BACKUP
        )
    return territory


def test_triage_suggests_the_primary_em_of_the_account_territory(reader_client):
    primary = EngagementManagerFactory(name="Tom Becker")
    territory = _territory_with(primary)
    opportunity = OpportunityFactory(account=AccountFactory(territory=territory))
    ScopingIssueFactory(title="new one", opportunity=opportunity, labels=[SC, "Open"])
    response = reader_client.get("/triage/")
    ((_issue, suggestion, _form),) = response.context["rows"]
    assert (suggestion.engagement_manager, suggestion.segment) == (primary, Segment.ENT_EMEA)
    assert "Primary for EMEA - Enterprise - DACH" in response.content.decode()


def test_triage_suggests_the_backup_when_the_primary_is_overloaded(reader_client):
    primary, backup = EngagementManagerFactory(), EngagementManagerFactory()
    territory = _territory_with(primary, backup)
    for _ in range(6):
        ScopingIssueFactory(engagement_manager=primary, labels=[SC, "proposal::SOW_WIP", "Segment::SMB"])
    ScopingIssueFactory(opportunity=OpportunityFactory(account=AccountFactory(territory=territory)))
    ((_issue, suggestion, _form),) = reader_client.get("/triage/").context["rows"]
    assert suggestion.engagement_manager == backup


def test_triaging_sets_segment_and_assignee_in_gitlab_and_leaves_the_queue(em_client):
    em = EngagementManagerFactory(gitlab_username="tbecker", gitlab_user_id=77)
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    response = em_client.post(
        f"/triage/{issue.iid}/",
        {"segment": "Ent_EMEA", "engagement_manager": "tbecker"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200 and response.content == b""
    issue.refresh_from_db()
    assert (issue.segment, issue.engagement_manager) == (Segment.ENT_EMEA, em)
    assert list(GitLabWrite.objects.values_list("intent", flat=True)) == [
        {"segment": "Ent_EMEA"},
        {"assignee_ids": [77]},
    ]
    assert em_client.get("/triage/").context["rows"] == []


def test_triage_with_an_unknown_em_shows_the_error_and_changes_nothing(em_client):
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    response = em_client.post(f"/triage/{issue.iid}/", {"segment": "Ent_EMEA", "engagement_manager": "ghost"})
    assert response.status_code == 400
    assert "Choose an engagement manager who is linked to GitLab." in response.content.decode()
    assert not GitLabWrite.objects.exists()


def test_readers_cannot_triage(reader_client):
    EngagementManagerFactory(gitlab_username="tbecker")
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    assert (
        reader_client.post(
            f"/triage/{issue.iid}/", {"segment": "SMB", "engagement_manager": "tbecker"}
        ).status_code
        == 403
    )


def test_triage_query_count_does_not_grow_with_issues(reader_client):
    territory = _territory_with(EngagementManagerFactory())
    ScopingIssueFactory(opportunity=OpportunityFactory(account=AccountFactory(territory=territory)))
    with CaptureQueriesContext(connection) as one:
        reader_client.get("/triage/")
    for _ in range(20):
        ScopingIssueFactory(opportunity=OpportunityFactory(account=AccountFactory(territory=territory)))
    with CaptureQueriesContext(connection) as many:
        reader_client.get("/triage/")
    assert len(many) == len(one)
