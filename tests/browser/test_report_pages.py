"""Each report page in Chromium at desk and phone width, with its chart, tables and CSV links.

Screenshots go to artifacts/screenshots/ (or PSPLAN_SCREENSHOT_DIR) for a person to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import time_machine

from tests.factories import UserFactory
from tests.reporting import datasets

pytestmark = [pytest.mark.browser]
SCREENSHOTS = Path(
    os.environ.get("PSPLAN_SCREENSHOT_DIR", Path(__file__).parents[2] / "artifacts" / "screenshots")
)
WIDTHS = {"desk": (1440, 900), "phone": (390, 844)}


@pytest.fixture
def leader_page(signed_in_page):
    with time_machine.travel(datasets.NOW, tick=True):
        UserFactory(username="leader", first_name="Lee", last_name="Leadership")
        yield signed_in_page("leader")


PAGES = [
    ("win-rate", "Win rate", datasets.win_rate),
    ("forecast", "PS forecast", datasets.pipeline),
    ("slipped-deals", "Slipped deals", datasets.slipped),
    ("calibration", "EM confidence calibration", datasets.calibration),
    ("stale/?preview=1", "Stale issues", datasets.stale),
    ("data-quality", "Data quality", datasets.data_quality),
]


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize(("path", "heading", "build"), PAGES, ids=[page[0].split("/")[0] for page in PAGES])
def test_each_report_page_renders_cleanly_and_is_captured(
    leader_page, live_server, path, heading, build, width
):
    build()
    page = leader_page
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS[width], strict=True)))
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{live_server.url}/reports/{path}")
    assert page.get_by_role("heading", name=heading, level=1).is_visible()
    assert page.get_by_role("link", name="Download CSV").first.is_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = path.split("/")[0]
    page.screenshot(path=str(SCREENSHOTS / f"report-{name}-{width}.png"), full_page=True)
    assert errors == []


def test_a_leader_moves_between_reports_by_keyboard_and_downloads_a_table(leader_page, live_server):
    datasets.pipeline()
    page = leader_page
    page.goto(f"{live_server.url}/reports/win-rate/")
    page.get_by_role("navigation", name="Reports").get_by_role("link", name="Forecast").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/reports/forecast/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV of the pipeline by close quarter").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "Close quarter,Flag,EM confidence,Opportunities,PS amount,Currency"
    assert "Q427,this quarter,Green,1,10000.00,USD" in lines


def test_a_figure_opens_the_issues_it_counts(leader_page, live_server):
    datasets.win_rate()
    page = leader_page
    page.goto(f"{live_server.url}/reports/win-rate/")
    row = page.get_by_role("row", name="Priya Raman")
    row.get_by_role("link", name="75%").click()
    page.wait_for_url("**/issues/?*")
    assert page.get_by_text("4 issues", exact=True).is_visible()
    assert page.get_by_text("From a report:").is_visible()


def test_printing_a_report_keeps_the_chart_and_tables_and_drops_the_controls(leader_page, live_server):
    datasets.win_rate()
    page = leader_page
    page.goto(f"{live_server.url}/reports/win-rate/")
    page.emulate_media(media="print")
    assert page.locator(".topbar").is_hidden() and page.locator("form.filters").is_hidden()
    assert page.get_by_role("img", name="Win rate, Q425 to Q427").is_visible()
    assert page.get_by_role("link", name="Download CSV").first.is_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "report-win-rate-print.png"), full_page=True)
