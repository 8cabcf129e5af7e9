from __future__ import annotations

import pytest

from psplan.queue import WriteStatus
from scoping.models import GitLabWrite
from tests.factories import ScopingIssueFactory, UserFactory

pytestmark = [pytest.mark.browser]
SC = "Services Calculator"


def test_a_leader_lands_on_the_issue_table_after_sign_in(signed_in_page, live_server):
    UserFactory(username="leader")
    ScopingIssueFactory(title="Scoping: Acme migration", labels=[SC, "proposal::SOW_WIP"])
    page = signed_in_page("leader")
    assert page.get_by_role("heading", name="Scoping issues").is_visible()
    assert page.get_by_role("cell", name="Scoping: Acme migration").is_visible()
    assert page.get_by_text("(read only)").is_visible()


def test_wrong_password_shows_a_clear_error(page, live_server, transactional_db):
    UserFactory(username="leader")
    page.goto(f"{live_server.url}/issues/")
    assert "/login/" in page.url
    page.get_by_label("Username").fill("leader")
    page.get_by_label("Password").fill("nope")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("Please enter a correct username and password")


def test_choosing_a_stage_filter_updates_the_table_in_place(signed_in_page):
    UserFactory(username="leader")
    ScopingIssueFactory(title="in SOW", labels=[SC, "proposal::SOW_WIP"])
    ScopingIssueFactory(title="just opened", labels=[SC, "Open"])
    page = signed_in_page("leader")
    page.get_by_label("Stage").select_option("SOW_WIP")
    page.wait_for_url("**/issues/?*stage=SOW_WIP*")
    page.get_by_text("1 issue", exact=True).wait_for()
    assert page.get_by_role("cell", name="in SOW").is_visible()
    assert page.get_by_role("cell", name="just opened").count() == 0
    page.reload()
    assert page.get_by_label("Stage").input_value() == "SOW_WIP"


def test_signing_out_returns_to_sign_in(signed_in_page, live_server):
    UserFactory(username="leader")
    page = signed_in_page("leader")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server.url}/login/")
    page.goto(f"{live_server.url}/issues/")
    assert "/login/" in page.url


def test_a_keyboard_user_reads_why_gitlab_refused_a_change(signed_in_page):
    UserFactory(username="leader")
    issue = ScopingIssueFactory(title="Scoping: Globex upgrade", labels=[SC, "Open"])
    GitLabWrite.objects.create(
        issue=issue,
        intent={"stage": "SOW_WIP"},
        status=WriteStatus.FAILED,
        last_error="403 Forbidden - You are not allowed to edit this issue",
    )
    page = signed_in_page("leader")
    badge = page.get_by_text("not saved in GitLab")
    reason = page.get_by_role("note")
    assert badge.is_visible() and not reason.is_visible()

    for _ in range(40):  # the skip link, the navigation, the filters, then the table
        page.keyboard.press("Tab")
        if badge.evaluate("summary => summary === document.activeElement"):
            break
    page.keyboard.press("Enter")

    assert reason.inner_text() == "GitLab answered: 403 Forbidden - You are not allowed to edit this issue"
    assert reason.is_visible()
