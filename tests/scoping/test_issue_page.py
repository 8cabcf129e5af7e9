"""The issue page: everything about one scoping issue, its history, and the EM's edits through the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from opportunities.models import OpportunityChange, SalesforceWrite
from psplan.queue import WriteStatus
from scoping.history import issue_timeline
from scoping.models import GitLabWrite, IssueChange, RuleAction, ScopingIssue
from scoping.services import close_issue_by_rule, set_issue_stage, set_keep_open
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db
SC = "Services Calculator"
HTMX = {"HX-Request": "true"}


def test_every_issue_link_in_the_app_leads_to_the_issue_page(reader_client):
    issue = ScopingIssueFactory(title="Acme migration")
    assert f'href="/issues/{issue.iid}/"' in reader_client.get("/issues/").content.decode()
    page = reader_client.get(f"/issues/{issue.iid}/")
    assert page.status_code == 200
    assert f"#{issue.iid} Acme migration" in page.content.decode()


def test_the_page_shows_the_facts_the_opportunity_and_a_link_to_gitlab(reader_client):
    em = EngagementManagerFactory(name="Priya Raman", gitlab_username="praman")
    opportunity = OpportunityFactory(name="Initech - Migration", engagement_manager=em)
    issue = ScopingIssueFactory(
        engagement_manager=em,
        opportunity=opportunity,
        labels=[SC, "proposal::SOW_WIP", "Segment::Ent_EMEA", "EM_Status::Waiting", "Public Sector US"],
    )
    html = reader_client.get(f"/issues/{issue.iid}/").content.decode()
    for text in ("SOW WIP", "Ent_EMEA", "Priya Raman", "Waiting", "Public Sector US", "Initech - Migration"):
        assert text in html
    assert "praman" not in html
    assert "<dt>Segment</dt><dd>Enterprise EMEA</dd>" in html
    assert f'href="{issue.web_url}" target="_blank" rel="noopener noreferrer">Open in GitLab' in html


def test_outside_text_is_escaped_and_only_web_urls_become_links(reader_client):
    issue = ScopingIssueFactory(
        title="<script>alert(1)</script>",
        description="<img src=x onerror=alert(2)>",
        web_url="javascript:alert(3)",
    )
    html = reader_client.get(f"/issues/{issue.iid}/").content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "javascript:" not in html


def test_an_em_saves_stage_segment_em_and_em_status_through_the_services(em_client):
    EngagementManagerFactory(name="Tom Becker", gitlab_username="tbecker", gitlab_user_id=77)
    issue = ScopingIssueFactory(labels=[SC, "proposal::Strawman_WIP"])
    response = em_client.post(
        f"/issues/{issue.iid}/edit/",
        {"stage": "SOW_WIP", "segment": "SMB", "engagement_manager": "tbecker", "em_status": "ToDo"},
        headers=HTMX,
    )
    assert response.status_code == 200
    assert f"#{issue.iid} saved" in response.content.decode()
    issue.refresh_from_db()
    assert (issue.stage, issue.segment, issue.engagement_manager.name, issue.em_status) == (
        "SOW_WIP",
        "SMB",
        "Tom Becker",
        "ToDo",
    )
    assert GitLabWrite.objects.count() == 4


def test_saving_unchanged_fields_queues_nothing(em_client):
    issue = ScopingIssueFactory(labels=[SC, "proposal::SOW_WIP", "Segment::SMB"])
    em_client.post(
        f"/issues/{issue.iid}/edit/",
        {"stage": "SOW_WIP", "segment": "SMB", "engagement_manager": "", "em_status": ""},
        headers=HTMX,
    )
    assert not GitLabWrite.objects.exists()


def test_a_bad_stage_is_shown_inline_and_nothing_changes(em_client):
    issue = ScopingIssueFactory(labels=[SC, "proposal::SOW_WIP"])
    response = em_client.post(f"/issues/{issue.iid}/edit/", {"stage": "<b>x</b>"}, headers=HTMX)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'role="alert"' in html and "<b>x</b>" not in html
    assert not GitLabWrite.objects.exists()


def test_an_em_sets_and_clears_the_keep_open_override_with_a_reason(em_client):
    issue = ScopingIssueFactory()
    until = timezone.localdate() + timedelta(days=30)
    response = em_client.post(
        f"/issues/{issue.iid}/keep-open/",
        {"keep_open_until": until.isoformat(), "keep_open_reason": "Customer on holiday"},
        headers=HTMX,
    )
    assert f"until {until:%Y-%m-%d}" in response.content.decode()
    assert "Customer on holiday" in response.content.decode()
    assert ScopingIssue.objects.get(pk=issue.pk).keep_open_until == until
    em_client.post(f"/issues/{issue.iid}/keep-open/", {"action": "clear"}, headers=HTMX)
    assert ScopingIssue.objects.get(pk=issue.pk).keep_open_until is None


def test_a_keep_open_date_in_the_past_or_without_reason_is_refused_inline(em_client):
    issue = ScopingIssueFactory()
    response = em_client.post(
        f"/issues/{issue.iid}/keep-open/",
        {"keep_open_until": (timezone.localdate() - timedelta(days=1)).isoformat(), "keep_open_reason": ""},
        headers=HTMX,
    )
    assert response.status_code == 400
    assert "Choose today or a later date." in response.content.decode()
    assert ScopingIssue.objects.get(pk=issue.pk).keep_open_until is None


def test_readers_see_the_page_but_cannot_edit(reader_client):
    issue = ScopingIssueFactory()
    html = reader_client.get(f"/issues/{issue.iid}/").content.decode()
    assert "Keep open until" not in html and ">Save<" not in html
    assert reader_client.post(f"/issues/{issue.iid}/edit/", {"stage": "SOW_WIP"}).status_code == 403
    assert reader_client.post(f"/issues/{issue.iid}/keep-open/", {"action": "clear"}).status_code == 403


def test_the_timeline_shows_moves_rules_overrides_and_time_in_each_stage(em_user):
    now = timezone.now()
    opportunity = OpportunityFactory()
    issue = ScopingIssueFactory(
        labels=[SC, "Open"], created_at=now - timedelta(days=20), opportunity=opportunity
    )
    set_issue_stage(issue=issue, stage="SOW_WIP", actor=em_user)
    IssueChange.objects.update(changed_at=now - timedelta(days=5))
    set_keep_open(
        issue=issue, until=timezone.localdate() + timedelta(days=9), actor=em_user, reason="Legal review"
    )
    close_issue_by_rule(
        issue=issue,
        rule=RuleAction.Rule.STALE,
        reason="2026-01-01",
        intent={"stage": "Closed_Lost", "state": "closed"},
        note="PS Plan closed this issue: no activity for 2 months.",
    )
    OpportunityChange.objects.create(
        opportunity=opportunity, field="EMConfidence", old_value="Grey", new_value="Red", source="salesforce"
    )
    timeline = issue_timeline(issue)
    entries = {entry.what: entry for entry in timeline.entries}
    moved = entries["Stage: Open → SOW WIP"]
    assert (moved.who, moved.write_status, moved.source) == (
        "Priya Raman",
        WriteStatus.PENDING,
        "PS Plan page",
    )
    assert entries["Keep open until: — → " + (timezone.localdate() + timedelta(days=9)).isoformat()].note == (
        "Legal review"
    )
    closed = entries["Stage: SOW WIP → Closed lost"]
    assert closed.who == "Closing rule: No activity"
    assert closed.note == "PS Plan closed this issue: no activity for 2 months."
    assert "Opportunity EMConfidence: Grey → Red" in entries
    assert timeline.entries[-1].what == "Issue created"
    assert [(span.stage.value, span.duration.days) for span in timeline.stages] == [
        ("Open", 15),
        ("SOW_WIP", 5),
        ("Closed_Lost", 0),
    ]


def test_a_move_seen_in_gitlab_is_in_the_timeline_with_who_made_it(em_user):
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    IssueChange.objects.create(
        issue=issue,
        field="stage",
        old_value="Open",
        new_value="Approved",
        source="gitlab",
        actor_name="an.em",
    )
    (entry, _created) = issue_timeline(issue).entries
    assert (entry.what, entry.who, entry.source) == ("Stage: Open → Approved", "an.em", "GitLab")


def test_pending_changes_are_listed_with_their_state(em_client, em_user):
    issue = ScopingIssueFactory(labels=[SC, "Open"])
    set_issue_stage(issue=issue, stage="SOW_WIP", actor=em_user)
    GitLabWrite.objects.update(status=WriteStatus.FAILED, last_error="403 Forbidden: label missing")
    html = em_client.get(f"/issues/{issue.iid}/").content.decode()
    assert "Changes not yet in GitLab or Salesforce" in html
    assert "403 Forbidden: label missing" in html


def test_the_opportunity_panel_shows_how_its_newest_salesforce_write_fared(em_client):
    opportunity = OpportunityFactory()
    issue = ScopingIssueFactory(labels=[SC, "Open"], opportunity=opportunity)
    page = f"/issues/{issue.iid}/"

    def panel_state() -> str:
        html = em_client.get(page).content.decode()
        return html.split('<span class="write-state">', 1)[1].split("</form>", 1)[0]

    assert "Salesforce" not in panel_state()  # never written
    SalesforceWrite.objects.create(
        opportunity=opportunity,
        changes={"em_confidence": "Red"},
        status=WriteStatus.FAILED,
        last_error="Locked",
    )
    assert "not saved in Salesforce" in panel_state() and "Salesforce answered: Locked" in panel_state()
    SalesforceWrite.objects.create(
        opportunity=opportunity, changes={"em_confidence": "Green"}, status=WriteStatus.DELIVERED
    )
    assert "saved in Salesforce" in panel_state() and "Locked" not in panel_state()


def test_issue_page_query_count_does_not_grow_with_history(em_client, em_user):
    issue = ScopingIssueFactory(labels=[SC, "Open"], opportunity=OpportunityFactory())
    set_issue_stage(issue=issue, stage="SOW_WIP", actor=em_user)
    with CaptureQueriesContext(connection) as one:
        em_client.get(f"/issues/{issue.iid}/")
    for stage in ["Approved", "SOW_WIP"] * 10:
        set_issue_stage(issue=issue, stage=stage, actor=em_user)
    with CaptureQueriesContext(connection) as many:
        em_client.get(f"/issues/{issue.iid}/")
    assert len(many) == len(one)
