"""Every page in Chromium at 1440 px (board and My work at 390 px too), kept as artifacts to look at.

Screenshots go to artifacts/screenshots/ (git-ignored). The pages must raise no Content-Security-Policy
violation, and at 390 px the navigation collapses and nothing makes the page wider than the screen.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from scoping.models import ScopingIssue

pytestmark = [pytest.mark.browser]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
PASSWORD = "correct horse battery staple"
EM_PAGES = {
    "my-work": "/my-work/",
    "board": "/boards/",
    "board-all": "/boards/?engagement_manager=all",
    "triage": "/triage/",
    "issues": "/issues/",
    "issue": "/issues/{iid}/",
    "opportunities": "/opportunities/",
    "sync": "/sync/",
    "api-token": "/api/token/",
    "api-docs": "/api/docs/",
}
# The report pages belong to the reports; they are photographed but not held to the CSP check here.
REPORT_PAGES = {
    "win-rate": "/reports/win-rate/",
    "forecast": "/reports/forecast/",
    "data-quality": "/reports/data-quality/",
}


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", verbosity=0)
    for user in get_user_model().objects.filter(username__in=["em", "leader", "admin"]):
        user.set_password(PASSWORD)
        user.save()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return ScopingIssue.objects.filter(opportunity__isnull=False, engagement_manager__isnull=False).first()


def _violations(page) -> list[str]:
    found: list[str] = []
    page.on(
        "console",
        lambda message: found.append(message.text) if "Content Security Policy" in message.text else None,
    )
    return found


def _nav_link(page):
    return page.get_by_role("navigation", name="Main").get_by_role("link", name="Triage", exact=True)


def test_every_page_at_1440_px_without_csp_violations(signed_in_page, live_server, demo):
    page = signed_in_page("em", PASSWORD)
    page.set_viewport_size({"width": 1440, "height": 900})
    violations = _violations(page)
    for name, path in {**EM_PAGES, **REPORT_PAGES}.items():
        page.goto(f"{live_server.url}{path.format(iid=demo.iid)}")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=SCREENSHOTS / f"{name}-1440.png", full_page=True)
        if name in EM_PAGES:
            assert violations == [], (name, violations)
        violations.clear()


def test_board_and_my_work_fit_a_390_px_phone(signed_in_page, live_server, demo):
    page = signed_in_page("em", PASSWORD)
    page.set_viewport_size({"width": 390, "height": 844})
    for name in ("my-work", "board", "issues", "opportunities"):
        page.goto(f"{live_server.url}{EM_PAGES[name]}")
        assert _nav_link(page).is_hidden()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, name
        page.screenshot(path=SCREENSHOTS / f"{name}-390.png", full_page=True)
    page.get_by_role("button", name="Menu").click()
    assert _nav_link(page).is_visible()
    page.screenshot(path=SCREENSHOTS / "menu-open-390.png")


def test_a_leader_sees_the_all_ems_board_read_only(signed_in_page, live_server, demo):
    page = signed_in_page("leader", PASSWORD)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/boards/?engagement_manager=all")
    assert page.get_by_role("button", name="Move", exact=True).count() == 0
    page.screenshot(path=SCREENSHOTS / "board-all-leader-1440.png", full_page=True)


def test_an_admin_reads_the_audit_trail_on_a_desk_and_a_phone(signed_in_page, live_server, demo):
    page = signed_in_page("admin", PASSWORD)
    violations = _violations(page)
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/reports/audit/")
        assert page.get_by_role("heading", name="Audit trail").is_visible()
        assert page.get_by_role("cell").count() > 0
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=SCREENSHOTS / f"audit-{width}.png", full_page=True)
    assert violations == []
