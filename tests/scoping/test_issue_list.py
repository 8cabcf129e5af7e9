from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from scoping.choices import IssueState, Stage
from scoping.services import set_issue_stage
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db

SC = "Services Calculator"


def _titles(response) -> set[str]:
    return {row.item["title"] for row in response.context["rows"]}


def test_signed_in_reader_sees_the_issue_table(reader_client):
    ScopingIssueFactory(title="Scoping: Acme migration", labels=[SC, "proposal::SOW_WIP", "Segment::SMB"])
    response = reader_client.get("/issues/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Scoping: Acme migration" in html
    assert "SOW WIP" in html
    assert "(read only)" in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("stage=SOW_WIP", {"sow"}),
        ("stage=Closed_Won", {"won"}),
        ("segment=SMB", {"sow"}),
        ("em_status=Waiting", {"open"}),
        ("state=closed", {"won"}),
        ("close_qtr=Q325", {"won"}),
        ("close_qtr=q325", {"won"}),
        ("search=needle", {"sow"}),
        ("engagement_manager=praman", {"open"}),
        ("public_sector=true", {"won"}),
        ("", {"sow", "won", "open"}),
    ],
)
def test_filters_narrow_the_table(reader_client, query, expected):
    em = EngagementManagerFactory(gitlab_username="praman")
    ScopingIssueFactory(
        title="sow", description="a needle here", labels=[SC, "proposal::SOW_WIP", "Segment::SMB"]
    )
    ScopingIssueFactory(
        title="won",
        state=IssueState.CLOSED,
        labels=[SC, "proposal::Closed_Won", "close_qtr::Q325", "Public Sector US"],
    )
    ScopingIssueFactory(title="open", labels=[SC, "Open", "EM_Status::Waiting"], engagement_manager=em)
    assert _titles(reader_client.get(f"/issues/?{query}")) == expected


def test_stale_filter_and_highlight(reader_client):
    now = timezone.now()
    ScopingIssueFactory(title="quiet", last_activity_at=now - timedelta(days=70))
    ScopingIssueFactory(title="nearly", last_activity_at=now - timedelta(days=55))
    ScopingIssueFactory(title="busy", last_activity_at=now - timedelta(days=2))
    assert _titles(reader_client.get("/issues/?stale=true")) == {"quiet"}
    assert _titles(reader_client.get("/issues/?stale=false")) == {"nearly", "busy"}
    html = reader_client.get("/issues/").content.decode()
    assert 'class="stale"' in html and 'class="going-stale"' in html


def test_a_malformed_close_quarter_filter_says_what_is_wrong(reader_client):
    ScopingIssueFactory()
    response = reader_client.get("/issues/?close_qtr=Q3-23")
    assert response.status_code == 200
    assert "Enter a fiscal quarter like Q323." in response.content.decode()
    assert _titles(response) == set()


def _headers_and_cells(html: str) -> tuple[list[str], list[str]]:
    """The table's column headers and its first row's cells, as HTML."""
    headers = re.findall(r'<th scope="col">(.*?)</th>', html)
    first_row = re.search(r"<tbody>\s*<tr[^>]*>(.*?)</tr>", html, re.S).group(1)
    return headers, re.findall(r"<td>(.*?)</td>", first_row, re.S)


def test_the_table_shows_the_declared_columns_with_cells_people_read(reader_client, em_user):
    """Headers are the columns' declared labels (the same as the CSV's); each cell shows the value as people read
    it: names rather than ids, the stage's words, links that stay inside PS Plan or go to the other system."""
    em = EngagementManagerFactory(name="Priya Raman")
    opportunity = OpportunityFactory(name="Acme <renewal>", salesforce_id="006000000000123AAA")
    issue = ScopingIssueFactory(
        title="<b>Acme</b> migration",
        labels=[SC, "proposal::Strawman_WIP", "Segment::SMB", "EM_Status::ToDo", "Public Sector US"],
        engagement_manager=em,
        opportunity=opportunity,
    )
    set_issue_stage(issue=issue, stage=Stage.SOW_WIP, actor=em_user)

    headers, cells = _headers_and_cells(reader_client.get("/issues/").content.decode())

    assert headers == [
        "Issue",
        "Title",
        "Stage",
        "Segment",
        "Engagement manager",
        "EM status",
        "Close quarter",
        "Opportunity",
        "Last activity",
    ]
    issue_cell, title, stage, segment, manager, em_status, close_qtr, opportunity_cell, activity = cells
    assert issue_cell == f'<a href="/issues/{issue.iid}/">#{issue.iid}</a>'
    assert title.startswith("&lt;b&gt;Acme&lt;/b&gt; migration")  # GitLab's text never becomes markup
    assert "Public Sector US" in title and "sending…" in title and "GitLab ↗" in title
    assert stage == '<span class="stage stage-sow_wip">SOW WIP</span>'
    assert (segment, manager, em_status, close_qtr) == ("SMB", "Priya Raman", "To do", "—")
    assert opportunity_cell == (
        '<a href="https://login.salesforce.com/lightning/r/Opportunity/006000000000123AAA/view" '
        'target="_blank" rel="noopener noreferrer">Acme &lt;renewal&gt;</a>'
    )
    assert re.fullmatch(r'<time datetime="[^"]+Z" title="[^"]+">[^<]+</time>', activity)


def test_an_issue_without_an_em_or_an_opportunity_says_so(reader_client):
    ScopingIssueFactory(labels=[SC, "Open"])

    _, cells = _headers_and_cells(reader_client.get("/issues/").content.decode())

    assert (cells[4], cells[5], cells[7]) == ("Unassigned", "—", "—")


def test_htmx_request_gets_only_the_table_fragment(reader_client):
    ScopingIssueFactory(title="fragment row")
    response = reader_client.get("/issues/?stage=Open", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert "fragment row" in html
    assert "<html" not in html and "<table" in html


def _query_count(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def test_issue_table_query_count_does_not_grow_with_rows(reader_client):
    em = EngagementManagerFactory()
    ScopingIssueFactory(engagement_manager=em, opportunity=OpportunityFactory(), labels=[SC, "Segment::SMB"])
    one_row = _query_count(reader_client, "/issues/")
    for _ in range(49):
        ScopingIssueFactory(engagement_manager=EngagementManagerFactory(), opportunity=OpportunityFactory())
    assert _query_count(reader_client, "/issues/") == one_row


def _csv(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_table_downloads_as_csv_with_the_pages_filters_and_every_row(reader_client):
    """Not only the page on screen: every issue the filters keep, with the API's columns."""
    ScopingIssueFactory.create_batch(60, labels=[SC, "proposal::SOW_WIP", "Segment::SMB"])
    ScopingIssueFactory(title="=HYPERLINK(1)", labels=[SC, "proposal::SOW_WIP", "Segment::SMB"])
    ScopingIssueFactory(labels=[SC, "Open", "Segment::SMB"])

    page = reader_client.get("/issues/?stage=SOW_WIP").content.decode()
    response = reader_client.get("/issues/?stage=SOW_WIP&csv=1")

    assert 'href="?stage=SOW_WIP&amp;csv=1"' in page
    assert response["Content-Disposition"] == 'attachment; filename="scoping-issues.csv"'
    header, *rows = _csv(response)
    assert header[:3] == ["Issue", "Title", "GitLab URL"]
    assert len(rows) == 61
    assert {row[header.index("Stage")] for row in rows} == {"SOW_WIP"}
    assert "'=HYPERLINK(1)" in {row[1] for row in rows}  # a spreadsheet shows it, never runs it


def test_a_bad_filter_refuses_the_download_with_the_reason(reader_client):
    response = reader_client.get("/issues/?stage=Nonsense&csv=1")

    assert response.status_code == 400
    assert "stage" in response.content.decode()
