"""The EM board (capped columns, swimlanes, moving cards, EM status) and the triage queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opportunities.choices import AssignmentRole, Segment
from opportunities.models import TerritoryAssignment
from scoping.choices import IssueState, Stage
from scoping.models import GitLabWrite, ScopingIssue
from scoping.workspace import COLUMN_CAP, TRIAGE_PER_PAGE
from tests.factories import (
    AccountFactory,
    EngagementManagerFactory,
    OpportunityFactory,
    ScopingIssueFactory,
    TerritoryFactory,
)

pytestmark = pytest.mark.django_db
SC = "Services Calculator"
HTMX = {"HX-Request": "true"}


def _columns(response):
    if response.context["columns"] is not None:
        return response.context["columns"]
    return [column for lane in response.context["lanes"] for column in lane.columns]


def _column(response, stage) -> list[str]:
    return [issue.title for column in _columns(response) if column.stage == stage for issue in column.cards]


def test_an_em_sees_their_own_board_by_default(em_client, em_user):
    mine = em_user.engagement_manager
    ScopingIssueFactory(title="mine", engagement_manager=mine, labels=[SC, "proposal::SOW_WIP"])
    ScopingIssueFactory(
        title="theirs", engagement_manager=EngagementManagerFactory(), labels=[SC, "proposal::SOW_WIP"]
    )
    response = em_client.get("/boards/")
    assert response.context["board_em"] == mine
    assert _column(response, Stage.SOW_WIP) == ["mine"]


def test_the_all_ems_board_has_a_swimlane_per_em_named_by_name(reader_client):
    ScopingIssueFactory(engagement_manager=EngagementManagerFactory(name="Tom Becker", gitlab_username="tb"))
    ScopingIssueFactory(engagement_manager=EngagementManagerFactory(name="Aoife Walsh", gitlab_username="aw"))
    ScopingIssueFactory(engagement_manager=None)
    response = reader_client.get("/boards/?engagement_manager=all")
    lanes = response.context["lanes"]
    assert [lane.engagement_manager.name if lane.engagement_manager else None for lane in lanes] == [
        None,
        "Aoife Walsh",
        "Tom Becker",
    ]
    html = response.content.decode()
    assert 'aria-label="Tom Becker"' in html and "tb</" not in html


def test_board_of_everyone_shows_recently_closed_but_not_old_closed(reader_client):
    now = timezone.now()
    for title, days in (("recent", 10), ("old", 200)):
        ScopingIssueFactory(
            title=title,
            state=IssueState.CLOSED,
            closed_at=now - timedelta(days=days),
            labels=[SC, "proposal::Closed_Won"],
        )
    response = reader_client.get("/boards/?engagement_manager=all")
    assert _column(response, Stage.CLOSED_WON) == ["recent"]
    html = response.content.decode()
    assert "last 90 days" in html
    assert ">Move<" not in html


def test_a_full_column_shows_its_cap_and_links_to_the_rest(em_client, em_user):
    em = em_user.engagement_manager
    for _ in range(COLUMN_CAP + 4):
        ScopingIssueFactory(engagement_manager=em, labels=[SC, "proposal::SOW_WIP"])
    response = em_client.get("/boards/")
    (column,) = [c for c in response.context["columns"] if c.stage == Stage.SOW_WIP]
    assert (len(column.cards), column.total) == (COLUMN_CAP, COLUMN_CAP + 4)
    assert "Show 4 more" in response.content.decode()


def test_unknown_board_owner_is_404(reader_client):
    assert reader_client.get("/boards/?engagement_manager=nobody").status_code == 404


def test_moving_a_card_queues_the_gitlab_change_and_redraws_the_board(em_client):
    issue = ScopingIssueFactory(title="card", labels=[SC, "proposal::Strawman_WIP"])
    response = em_client.post(
        f"/issues/{issue.iid}/stage/?engagement_manager=all", {"stage": "Estimate_Feedback"}, headers=HTMX
    )
    assert response.status_code == 200
    assert _column(response, Stage.ESTIMATE_FEEDBACK) == ["card"]
    assert GitLabWrite.objects.get().intent == {"stage": "Estimate_Feedback", "state": "opened"}
    assert f"#{issue.iid} moved to Estimate feedback." in response.content.decode()


def test_a_moved_card_counts_its_days_in_the_new_stage_from_the_move(em_client, em_user):
    issue = ScopingIssueFactory(
        engagement_manager=em_user.engagement_manager,
        labels=[SC, "proposal::Strawman_WIP"],
        created_at=timezone.now() - timedelta(days=40),
    )
    before = em_client.get("/boards/")
    (card,) = next(c for c in _columns(before) if c.stage == Stage.STRAWMAN_WIP).cards
    assert (timezone.now() - card.stage_entered_at).days == 40
    em_client.post(f"/issues/{issue.iid}/stage/", {"stage": "SOW_WIP"}, headers=HTMX)
    (card,) = next(c for c in _columns(em_client.get("/boards/")) if c.stage == Stage.SOW_WIP).cards
    assert (timezone.now() - card.stage_entered_at).days == 0


def test_toggling_em_status_on_a_card_queues_the_label(em_client, em_user):
    issue = ScopingIssueFactory(
        engagement_manager=em_user.engagement_manager, labels=[SC, "proposal::SOW_WIP"]
    )
    response = em_client.post(f"/issues/{issue.iid}/em-status/", {"em_status": "ToDo"}, headers=HTMX)
    assert response.status_code == 200
    assert ScopingIssue.objects.get(pk=issue.pk).em_status == "ToDo"
    assert GitLabWrite.objects.get().intent == {"em_status": "ToDo"}
    assert 'aria-label="EM status: To do. Switch to Waiting"' in response.content.decode()


def test_readers_cannot_move_cards_or_toggle_em_status(reader_client):
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    assert reader_client.post(f"/issues/{issue.iid}/stage/", {"stage": "SOW_WIP"}).status_code == 403
    assert reader_client.post(f"/issues/{issue.iid}/em-status/", {"em_status": "ToDo"}).status_code == 403
    assert not GitLabWrite.objects.exists()


def test_a_move_to_an_unknown_stage_is_refused_and_the_echo_is_escaped(em_client):
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    response = em_client.post(f"/issues/{issue.iid}/stage/", {"stage": "<img src=x onerror=alert(1)>"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Unknown stage" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not GitLabWrite.objects.exists()


def test_text_from_gitlab_and_salesforce_on_a_card_is_escaped(em_client, em_user):
    hostile = OpportunityFactory(
        name='Deal "<script>alert(1)</script>', account=AccountFactory(name="<b>Acme</b> & Sons")
    )
    ScopingIssueFactory(
        title="<img src=x onerror=alert(1)>",
        labels=[SC, "proposal::SOW_WIP", "Segment::SMB"],
        engagement_manager=em_user.engagement_manager,
        opportunity=hostile,
    )
    html = em_client.get("/boards/").content.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>Acme" not in html and "&lt;b&gt;Acme&lt;/b&gt; &amp; Sons" in html


def test_text_from_gitlab_and_salesforce_on_a_triage_row_is_escaped(em_client):
    account = AccountFactory(name="<b>Acme</b> & Sons", sales_territory='EMEA "<script>x</script>')
    ScopingIssueFactory(
        title="<img src=x onerror=alert(1)>",
        labels=[SC, "Open"],
        opportunity=OpportunityFactory(account=account),
    )
    html = em_client.get("/triage/").content.decode()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>Acme" not in html and "&lt;b&gt;Acme&lt;/b&gt; &amp; Sons" in html
    assert "<script>x" not in html and "EMEA &quot;&lt;script&gt;x&lt;/script&gt;" in html


@pytest.mark.parametrize("board", ["all", "mine"])
def test_board_query_count_does_not_grow_with_cards(em_client, em_user, board):
    em = em_user.engagement_manager
    url = "/boards/?engagement_manager=all" if board == "all" else "/boards/"

    def add_issue():
        other = EngagementManagerFactory()
        ScopingIssueFactory(
            engagement_manager=em if board == "mine" else other,
            opportunity=OpportunityFactory(),
            labels=[SC, "proposal::SOW_WIP"],
        )

    add_issue()
    with CaptureQueriesContext(connection) as one:
        em_client.get(url)
    for _ in range(30):
        add_issue()
    with CaptureQueriesContext(connection) as many:
        em_client.get(url)
    assert len(many) == len(one)


# --- Triage ------------------------------------------------------------------------------------------


def _territory_with(primary, *backups, name="EMEA - Enterprise - DACH", segment=Segment.ENT_EMEA):
    territory = TerritoryFactory(name=name, segment=segment)
    TerritoryAssignment.objects.create(
        territory=territory, engagement_manager=primary, role=AssignmentRole.PRIMARY
    )
    for backup in backups:
        TerritoryAssignment.objects.create(
            territory=territory, engagement_manager=backup, role=AssignmentRole.BACKUP
        )
    return territory


def _new_issue(territory, **fields):
    return ScopingIssueFactory(
        opportunity=OpportunityFactory(account=AccountFactory(territory=territory)), **fields
    )


def _load(em, count):
    for _ in range(count):
        ScopingIssueFactory(engagement_manager=em, labels=[SC, "proposal::SOW_WIP", "Segment::SMB"])


def test_triage_suggests_the_primary_em_of_the_account_territory_and_preselects_it(reader_client):
    primary = EngagementManagerFactory(name="Tom Becker", gitlab_username="tbecker")
    _new_issue(_territory_with(primary), labels=[SC, "Open"])
    response = reader_client.get("/triage/")
    (row,) = response.context["rows"]
    assert (row.suggestion.engagement_manager, row.suggestion.segment) == (primary, Segment.ENT_EMEA)
    assert row.engagement_manager == "tbecker"
    assert row.segment == Segment.ENT_EMEA
    assert "Primary for EMEA - Enterprise - DACH" in response.content.decode()


def test_an_issue_already_assigned_keeps_its_em_as_the_suggestion(reader_client):
    assigned = EngagementManagerFactory(gitlab_username="assigned")
    primary = EngagementManagerFactory()
    _new_issue(_territory_with(primary), engagement_manager=assigned, labels=[SC, "Open"])
    (row,) = reader_client.get("/triage/").context["rows"]
    assert row.suggestion.engagement_manager == assigned
    assert row.engagement_manager == "assigned"


def test_a_primary_well_above_the_median_gives_way_to_the_least_loaded_em_of_the_segment(reader_client):
    primary, backup = EngagementManagerFactory(name="Primary"), EngagementManagerFactory(name="Backup")
    same_segment = EngagementManagerFactory(name="Same Segment")
    _territory_with(same_segment, name="EMEA - Enterprise - Nordics")
    _load(primary, 8)
    _load(backup, 3)
    _load(same_segment, 1)
    _new_issue(_territory_with(primary, backup))
    response = reader_client.get("/triage/")
    (row,) = response.context["rows"]
    assert row.suggestion.engagement_manager == same_segment
    assert row.suggestion.reason == (
        "Primary (primary for EMEA - Enterprise - DACH) carries 8 open issues, well above the team's median "
        "of 3; Same Segment has the fewest in Enterprise EMEA"
    )
    assert [(em.name, load) for em, load in row.suggestion.candidates] == [
        ("Same Segment", 1),
        ("Backup", 3),
        ("Primary", 8),
    ]
    assert "Open load: Same Segment 1 · Backup 3 · Primary 8" in response.content.decode()


def test_suggestions_spread_over_the_queue_instead_of_piling_on_one_backup(reader_client):
    primary, backup_a, backup_b = (EngagementManagerFactory() for _ in range(3))
    territory = _territory_with(primary, backup_a, backup_b)
    _load(primary, 10)
    for _ in range(6):
        _new_issue(territory)
    rows = reader_client.get("/triage/").context["rows"]
    chosen = [row.suggestion.engagement_manager for row in rows]
    assert chosen.count(backup_a) == chosen.count(backup_b) == 3


def test_the_queue_is_oldest_first_paginated_and_marks_issues_past_24_hours(reader_client):
    now = timezone.now()
    for n in range(TRIAGE_PER_PAGE + 1):
        ScopingIssueFactory(title=f"issue {n}", created_at=now - timedelta(hours=2 + n), labels=[SC, "Open"])
    first = reader_client.get("/triage/")
    titles = [row.issue.title for row in first.context["rows"]]
    assert titles[0] == f"issue {TRIAGE_PER_PAGE}" and len(titles) == TRIAGE_PER_PAGE
    assert [row.overdue for row in first.context["rows"]][-1] is False
    assert first.content.decode().count(">overdue<") == 4  # created 24 to 27 hours ago
    second = reader_client.get("/triage/?page=2")
    assert [row.issue.title for row in second.context["rows"]] == ["issue 0"]


def test_a_later_page_past_the_end_or_nonsense_page_keeps_the_whole_count(reader_client):
    now = timezone.now()
    for n in range(TRIAGE_PER_PAGE + 1):
        ScopingIssueFactory(title=f"issue {n}", created_at=now - timedelta(hours=2 + n), labels=[SC, "Open"])
    waiting = f"{TRIAGE_PER_PAGE + 1} waiting"
    for query, first_title in [
        ("2", "issue 0"),
        ("9", "issue 0"),
        ("0", "issue 0"),
        ("9" * 30, "issue 0"),  # past what the database can skip to
        ("x", f"issue {TRIAGE_PER_PAGE}"),
    ]:
        response = reader_client.get(f"/triage/?page={query}")
        assert response.context["rows"][0].issue.title == first_title, query
        assert waiting in response.content.decode(), query


def test_an_empty_queue_says_none_wait(reader_client):
    response = reader_client.get("/triage/")
    assert ">0 waiting<" in response.content.decode()
    assert "Nothing to triage." in response.content.decode()


def test_triaging_confirms_with_undo_updates_the_count_and_writes_to_gitlab(em_client):
    em = EngagementManagerFactory(name="Tom Becker", gitlab_username="tbecker", gitlab_user_id=77)
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    ScopingIssueFactory(labels=[SC, "Open"])
    response = em_client.post(
        f"/triage/{issue.iid}/", {"segment": "Ent_EMEA", "engagement_manager": "tbecker"}, headers=HTMX
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert f"#{issue.iid} {issue.title} triaged: Ent_EMEA, Tom Becker." in html
    assert ">Undo<" in html and 'id="triage-count" hx-swap-oob="true">1 waiting' in html
    issue.refresh_from_db()
    assert (issue.segment, issue.engagement_manager) == (Segment.ENT_EMEA, em)
    assert list(GitLabWrite.objects.values_list("intent", flat=True)) == [
        {"segment": "Ent_EMEA"},
        {"assignee_ids": [77]},
    ]


def test_undo_puts_the_issue_back_in_the_queue(em_client):
    EngagementManagerFactory(gitlab_username="tbecker", gitlab_user_id=77)
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    em_client.post(f"/triage/{issue.iid}/", {"segment": "SMB", "engagement_manager": "tbecker"}, headers=HTMX)
    response = em_client.post(
        f"/triage/{issue.iid}/undo/", {"segment": "", "engagement_manager": ""}, headers=HTMX
    )
    assert response.status_code == 200
    assert 'id="triage-count" hx-swap-oob="true">1 waiting' in response.content.decode()
    issue.refresh_from_db()
    assert (issue.segment, issue.engagement_manager) == ("", None)
    assert [row.issue.iid for row in em_client.get("/triage/").context["rows"]] == [issue.iid]


def test_bulk_accept_triages_the_selected_rows_with_their_suggestions(em_client):
    primary = EngagementManagerFactory(gitlab_username="tbecker")
    territory = _territory_with(primary)
    picked, left = _new_issue(territory), _new_issue(territory)
    response = em_client.post("/triage/accept/", {"iid": [picked.iid]}, headers=HTMX)
    assert response.status_code == 200
    assert "1 issue triaged as suggested." in response.content.decode()
    picked.refresh_from_db()
    assert (picked.engagement_manager, picked.segment) == (primary, Segment.ENT_EMEA)
    assert [row.issue.iid for row in em_client.get("/triage/").context["rows"]] == [left.iid]


def test_bulk_accept_without_a_selection_says_so_and_changes_nothing(em_client):
    ScopingIssueFactory(labels=[SC, "Open"])
    response = em_client.post("/triage/accept/", {}, headers=HTMX)
    assert response.status_code == 400
    assert "Select rows that are still waiting for triage." in response.content.decode()
    assert not GitLabWrite.objects.exists()


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
    assert reader_client.post("/triage/accept/", {"iid": [issue.iid]}).status_code == 403


def test_triage_query_count_does_not_grow_with_issues(reader_client):
    territory = _territory_with(EngagementManagerFactory())
    _new_issue(territory)
    with CaptureQueriesContext(connection) as one:
        reader_client.get("/triage/")
    for _ in range(20):
        _new_issue(territory)
    with CaptureQueriesContext(connection) as many:
        reader_client.get("/triage/")
    assert len(many) == len(one)


def test_an_em_not_linked_to_a_gitlab_user_is_neither_suggested_nor_offered(reader_client):
    unlinked = EngagementManagerFactory(name="Not In GitLab", gitlab_username="ghost", gitlab_user_id=None)
    backup = EngagementManagerFactory(name="Backup")
    _new_issue(_territory_with(unlinked, backup))
    response = reader_client.get("/triage/")
    (row,) = response.context["rows"]
    assert row.suggestion.engagement_manager == backup
    assert "Not In GitLab" not in row.engagement_manager_select


@pytest.mark.parametrize(("newest", "badge"), [("failed", "not saved in GitLab"), ("delivered", None)])
def test_the_card_and_the_list_badge_follow_the_newest_change_and_the_issue_page_keeps_every_refusal(
    em_client, em_user, newest, badge
):
    """As the API's write_back: a badge says how the latest change fared. A refusal an issue's later change
    did not repair stays listed on the issue page, where it can be read and retried."""
    issue = ScopingIssueFactory(
        title="Badge", engagement_manager=em_user.engagement_manager, labels=[SC, "Open"]
    )
    GitLabWrite.objects.create(issue=issue, status="failed", last_error="403 stage label missing")
    GitLabWrite.objects.create(issue=issue, status=newest, last_error="")

    board = em_client.get("/boards/").content.decode()
    listed = em_client.get("/issues/").content.decode()
    page = em_client.get(f"/issues/{issue.iid}/").content.decode()

    for html in (board, listed):
        assert ("not saved in GitLab" in html) is (badge is not None)
        assert "sending…" not in html
    assert "403 stage label missing" in page
