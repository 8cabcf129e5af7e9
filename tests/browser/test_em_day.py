"""An EM's day in Chromium, against the GitLab and Salesforce stand-ins: every change is seen there."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from opportunities.choices import Segment
from opportunities.models import Opportunity, TerritoryAssignment
from opportunities.salesforce_sync import pull_opportunities
from psplan.permissions import ENGAGEMENT_MANAGERS_GROUP
from scoping.gitlab_sync import sync_issues
from scoping.models import ScopingIssue
from scoping.services import set_issue_stage
from tests.factories import EngagementManagerFactory, TerritoryFactory, UserFactory

pytestmark = [pytest.mark.browser]
SC = "Services Calculator"
TERRITORY = "EMEA - Enterprise - DACH"


def eventually(check, *, timeout: float = 10.0):
    """What a stand-in has seen, waited for: delivery may finish just after the page redraws."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture
def em_day(gitlab_on, salesforce, transactional_db):
    """Priya (an EM who signs in) and Tom, known to GitLab and Salesforce; issues and one opportunity."""
    user = UserFactory(username="em", first_name="Priya", last_name="Raman")
    user.groups.add(Group.objects.get_or_create(name=ENGAGEMENT_MANAGERS_GROUP)[0])
    people = {}
    for name, username, login in (("Priya Raman", "praman", user), ("Tom Becker", "tbecker", None)):
        gitlab_user = gitlab_on.add_user(username, name=name)
        people[username] = EngagementManagerFactory(
            user=login,
            name=name,
            gitlab_username=username,
            gitlab_user_id=gitlab_user["id"],
            salesforce_user_id=salesforce.add_user(name),
        )
    territory = TerritoryFactory(name=TERRITORY, segment=Segment.ENT_EMEA)
    TerritoryAssignment.objects.create(
        territory=territory, engagement_manager=people["praman"], role="primary"
    )
    two_days_ago = timezone.now() - timedelta(days=2)
    issues = {
        "new": gitlab_on.add_issue(title="Initech scoping", labels=[SC, "Open"], created_at=two_days_ago),
        "drag": gitlab_on.add_issue(
            title="Acme SOW", labels=[SC, "proposal::Strawman_WIP", "Segment::Ent_EMEA"], assignees=["praman"]
        ),
        "keys": gitlab_on.add_issue(
            title="Globex estimate",
            labels=[SC, "proposal::Estimate_Feedback", "Segment::Ent_EMEA"],
            assignees=["praman"],
        ),
    }
    opportunity_id = salesforce.add_opportunity(
        Name="Initech - Migration",
        AccountId=salesforce.add_account("Initech", TERRITORY),
        CloseDate=timezone.localdate() + timedelta(days=20),
        Scoping_Issue_Link__c=issues["new"]["web_url"],
    )
    pull_opportunities(full=True)
    sync_issues(full=True)
    return {
        "gitlab": gitlab_on,
        "salesforce": salesforce,
        "opportunity": opportunity_id,
        **people,
        **{key: issue["iid"] for key, issue in issues.items()},
    }


def test_an_em_triages_with_the_suggestion_and_gitlab_gets_segment_and_assignee(
    signed_in_page, live_server, em_day
):
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/triage/")
    row = page.locator(f"#triage-{em_day['new']}")
    assert row.get_by_text("overdue").is_visible()
    assert row.get_by_label("Engagement manager").input_value() == "praman"
    assert row.get_by_label("Segment").input_value() == "Ent_EMEA"
    assert "Primary for EMEA - Enterprise - DACH" in row.inner_text()
    assert "Open load: Priya Raman 2" in row.inner_text()
    row.get_by_role("button", name="Triage").click()
    row.get_by_role("button", name="Undo").wait_for()
    assert page.locator("#triage-count").inner_text() == "0 waiting"
    assert page.get_by_role("status").filter(has_text="triaged to Priya Raman").count() == 1
    seen = eventually(lambda: "Segment::Ent_EMEA" in em_day["gitlab"].issue(em_day["new"])["labels"])
    assert seen
    assert [a["username"] for a in em_day["gitlab"].issue(em_day["new"])["assignees"]] == ["praman"]
    row.wait_for(state="detached", timeout=15_000)


def test_an_em_drags_a_card_and_moves_another_by_keyboard(signed_in_page, live_server, em_day):
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/boards/")
    dragged = page.locator(f"[data-iid='{em_day['drag']}']")
    dragged.drag_to(page.locator("[data-drop-stage='SOW_WIP'] > summary"))
    page.locator(f"[data-drop-stage='SOW_WIP'] [data-iid='{em_day['drag']}']").wait_for()
    assert eventually(lambda: "proposal::SOW_WIP" in em_day["gitlab"].issue(em_day["drag"])["labels"])

    card = page.locator(f"[data-iid='{em_day['keys']}']")
    card.get_by_role("button", name="Move", exact=True).focus()
    page.keyboard.press("Enter")
    stage = card.get_by_label("Stage")
    assert stage.evaluate("element => element === document.activeElement")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    time.sleep(0.5)
    assert ScopingIssue.objects.get(iid=em_day["keys"]).stage == "Estimate_Feedback"
    assert "proposal::Estimate_Feedback" in em_day["gitlab"].issue(em_day["keys"])["labels"]
    stage.select_option("Approved")
    card.get_by_role("button", name="Move here").click()
    moved = page.locator(f"[data-drop-stage='Approved'] [data-iid='{em_day['keys']}']")
    moved.wait_for()
    focus_on_card = "iid => document.activeElement.closest('[data-iid]')?.dataset.iid === String(iid)"
    page.wait_for_function(focus_on_card, arg=em_day["keys"], timeout=2_000)
    assert eventually(lambda: "proposal::Approved" in em_day["gitlab"].issue(em_day["keys"])["labels"])
    assert page.get_by_role("status").filter(has_text="moved to Approved").count() == 1


def test_an_em_toggles_em_status_and_sets_a_keep_open_override(signed_in_page, live_server, em_day):
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/boards/")
    card = page.locator(f"[data-iid='{em_day['drag']}']")
    card.get_by_role("button", name="EM status: none").click()
    page.locator(f"[data-iid='{em_day['drag']}']").get_by_role("button", name="EM status: To do").wait_for()
    assert eventually(lambda: "EM_Status::ToDo" in em_day["gitlab"].issue(em_day["drag"])["labels"])

    page.goto(f"{live_server.url}/issues/{em_day['drag']}/")
    until = timezone.localdate() + timedelta(days=45)
    page.get_by_label("Keep open until").fill(until.isoformat())
    page.get_by_label("Keep open reason").fill("Customer's budget cycle")
    page.locator("form[data-focus-key='keep-open']").get_by_role("button", name="Save").click()
    page.get_by_text(f"until {until:%Y-%m-%d}", exact=False).first.wait_for()
    assert page.get_by_text("Customer's budget cycle").first.is_visible()
    assert ScopingIssue.objects.get(iid=em_day["drag"]).keep_open_until == until
    page.get_by_label("EM status").select_option("Waiting")
    page.locator("form[data-focus-key='issue-fields']").get_by_role("button", name="Save").click()
    assert eventually(lambda: "EM_Status::Waiting" in em_day["gitlab"].issue(em_day["drag"])["labels"])


def test_red_without_a_rationale_is_refused_inline_then_saved_and_sent_to_salesforce(
    signed_in_page, live_server, em_day
):
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/opportunities/")
    row = page.locator(f"#opportunity-{Opportunity.objects.get().salesforce_id}")
    row.get_by_role("button", name="Edit").click()
    row.get_by_label("EM confidence").select_option("Red")
    row.get_by_role("button", name="Save").click()
    assert row.get_by_role("alert").inner_text().strip() == "Red confidence needs a rationale."
    assert page.get_by_role("heading", name="Opportunities").is_visible()
    row.get_by_label("Rationale").fill("Budget frozen until Q2")
    row.get_by_role("button", name="Save").click()
    row.get_by_text("Budget frozen until Q2").wait_for()
    record = eventually(
        lambda: (
            (r := em_day["salesforce"].get_opportunity(em_day["opportunity"]))["EM_Confidence__c"] == "Red"
            and r
        )
    )
    assert record["EM_Confidence_Rationale__c"] == "Budget frozen until Q2"


def test_an_em_hands_an_opportunity_to_another_em_from_the_issue_page(signed_in_page, live_server, em_day):
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/issues/{em_day['new']}/")
    panel = page.locator(".ps-panel")
    panel.get_by_label("Engagement manager").select_option(label="Tom Becker")
    panel.get_by_role("button", name="Save").click()
    page.get_by_role("status").filter(has_text="Initech - Migration saved").wait_for()
    assert eventually(
        lambda: (
            em_day["salesforce"].get_opportunity(em_day["opportunity"])["Engagement_Manager__c"]
            == em_day["tbecker"].salesforce_user_id
        )
    )


def test_a_change_made_elsewhere_shows_on_the_board_without_reload(signed_in_page, live_server, em_day):
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/boards/")
    set_issue_stage(issue=ScopingIssue.objects.get(iid=em_day["keys"]), stage="SOW_WIP", actor=None)
    page.locator(f"[data-drop-stage='SOW_WIP'] [data-iid='{em_day['keys']}']").wait_for(timeout=30_000)


def test_a_leader_sees_read_only_pages(signed_in_page, live_server, em_day):
    UserFactory(username="leader")
    page = signed_in_page("leader")
    for path in (
        "/boards/?engagement_manager=all",
        "/triage/",
        f"/issues/{em_day['drag']}/",
        "/opportunities/",
    ):
        page.goto(f"{live_server.url}{path}")
        assert page.get_by_text("(read only)").is_visible()
        for name in ("Move", "Triage", "Save", "Edit", "Accept suggestion"):
            assert page.get_by_role("button", name=name, exact=True).count() == 0, (path, name)
