from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from psplan.permissions import ENGAGEMENT_MANAGERS_GROUP
from scoping.models import GitLabWrite, ScopingIssue
from tests.factories import EngagementManagerFactory, ScopingIssueFactory, UserFactory

pytestmark = [pytest.mark.browser]
SC = "Services Calculator"


def _engagement_manager_user():
    user = UserFactory(username="em")
    user.groups.add(Group.objects.get_or_create(name=ENGAGEMENT_MANAGERS_GROUP)[0])
    return EngagementManagerFactory(user=user, name="Priya Raman", gitlab_username="praman")


def test_moving_a_card_with_its_menu_puts_it_in_the_new_column(signed_in_page, live_server):
    em = _engagement_manager_user()
    ScopingIssueFactory(iid=7, title="Acme SOW", engagement_manager=em, labels=[SC, "proposal::Strawman_WIP"])
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/boards/")
    assert page.get_by_role("heading", name="Priya Raman's board").is_visible()
    card = page.locator("[data-iid='7']")
    card.get_by_label("Move to").select_option("SOW_WIP")
    page.locator("section[data-stage='SOW_WIP'] [data-iid='7']").wait_for()
    assert page.locator("section[data-stage='Strawman_WIP'] [data-iid='7']").count() == 0
    assert ScopingIssue.objects.get(iid=7).stage == "SOW_WIP"
    assert GitLabWrite.objects.get().intent == {"stage": "SOW_WIP", "state": "opened"}


def test_triaging_an_issue_removes_it_from_the_queue(signed_in_page, live_server):
    _engagement_manager_user()
    EngagementManagerFactory(name="Tom Becker", gitlab_username="tbecker", gitlab_user_id=77)
    ScopingIssueFactory(iid=9, title="Brand new scoping issue", labels=[SC, "Open"])
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/triage/")
    row = page.locator("#triage-9")
    row.locator("select[name=segment]").select_option("Ent_EMEA")
    row.locator("select[name=engagement_manager]").select_option("tbecker")
    row.get_by_role("button", name="Triage").click()
    row.wait_for(state="detached")
    issue = ScopingIssue.objects.get(iid=9)
    assert (issue.segment, issue.engagement_manager.gitlab_username) == ("Ent_EMEA", "tbecker")
