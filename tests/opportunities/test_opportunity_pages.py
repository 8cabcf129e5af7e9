"""The opportunities page: EMs keep the PS section current; Salesforce's answer shows on the row."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from opportunities.models import Opportunity, SalesforceWrite
from psplan.queue import WriteStatus
from tests.factories import EngagementManagerFactory, OpportunityFactory

pytestmark = pytest.mark.django_db
OPP = "006000000000777AAA"


def test_open_opportunities_are_listed_by_default(reader_client):
    OpportunityFactory(name="Open deal")
    OpportunityFactory(name="Closed deal", is_closed=True)
    response = reader_client.get("/opportunities/")
    assert [row.item["name"] for row in response.context["rows"]] == ["Open deal"]
    closed = reader_client.get("/opportunities/?is_closed=true")
    assert [row.item["name"] for row in closed.context["rows"]] == ["Closed deal"]
    assert ">Edit<" not in response.content.decode()


def test_the_table_shows_the_declared_columns_with_cells_people_read(reader_client):
    """Headers are the columns' declared labels (as in the CSV); cells show names, amounts and links."""
    OpportunityFactory(
        salesforce_id=OPP,
        name="Acme <expansion>",
        account__name="Acme Corp",
        close_date=date(2026, 12, 15),
        close_quarter="Q427",
        proserv_amount="12500.40",
        engagement_manager=EngagementManagerFactory(name="Priya Raman"),
        em_confidence="Amber",
        em_confidence_rationale="Procurement " + "is slow " * 30,
        scoping_issue_link="https://gitlab.example.com/group/ps-plan/-/issues/12",
    )
    html = reader_client.get("/opportunities/").content.decode()
    headers = re.findall(r'<th scope="col">(.*?)</th>', html)
    cells = re.findall(
        r"<td>(.*?)</td>", re.search(rf'<tr id="opportunity-{OPP}".*?</tr>', html, re.S).group()
    )

    assert headers[:-1] == [
        "Opportunity",
        "Close date",
        "Stage",
        "PS amount",
        "Engagement manager",
        "EM confidence",
        "Rationale",
        "Write-back",
    ]
    name, close, stage, amount, manager, confidence, rationale, write_back, actions = cells
    assert name == (
        f'<a href="https://login.salesforce.com/lightning/r/Opportunity/{OPP}/view" target="_blank" '
        'rel="noopener noreferrer">Acme &lt;expansion&gt;</a><br><small class="muted">Acme Corp</small>'
    )
    assert (
        close
        == '<time class="nowrap" datetime="2026-12-15">2026-12-15</time><br><small class="muted">Q427</small>'
    )
    assert (stage, amount, manager) == ("3-Technical Evaluation", "12,500", "Priya Raman")
    assert confidence == '<span class="tag confidence-amber">Amber</span>'
    assert rationale.startswith("Procurement is slow") and "…<br><small>" in rationale
    assert 'href="https://gitlab.example.com/group/ps-plan/-/issues/12"' in rationale
    assert (write_back, actions) == ('<span class="write-state"></span>', "")


def test_an_em_sets_confidence_with_a_rationale_and_the_row_shows_it_is_being_sent(em_client):
    OpportunityFactory(salesforce_id=OPP)
    response = em_client.post(
        f"/opportunities/{OPP}/edit/",
        {"em_confidence": "Amber", "em_confidence_rationale": "Procurement is slow"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Amber" in html and "Procurement is slow" in html and "sending…" in html
    assert Opportunity.objects.get().em_confidence == "Amber"
    assert SalesforceWrite.objects.get().changes == {
        "em_confidence": "Amber",
        "em_confidence_rationale": "Procurement is slow",
    }


def test_red_without_a_rationale_is_refused_with_the_reason_and_nothing_is_sent(em_client):
    OpportunityFactory(salesforce_id=OPP)
    response = em_client.post(f"/opportunities/{OPP}/edit/", {"em_confidence": "Red"})
    assert response.status_code == 400
    assert "Red confidence needs a rationale." in response.content.decode()
    assert Opportunity.objects.get().em_confidence == "Grey"
    assert not SalesforceWrite.objects.exists()


def test_a_salesforce_refusal_is_shown_on_the_row(reader_client):
    opportunity = OpportunityFactory(salesforce_id=OPP)
    SalesforceWrite.objects.create(
        opportunity=opportunity,
        changes={"em_confidence": "Green"},
        status=WriteStatus.FAILED,
        last_error="FIELD_CUSTOM_VALIDATION_EXCEPTION: Close date must be in the future",
    )
    html = reader_client.get("/opportunities/").content.decode()
    assert (
        '<details class="write-badge"><summary class="tag failed-tag">not saved in Salesforce</summary>'
        '<span class="write-reason" role="note">Salesforce answered: FIELD_CUSTOM_VALIDATION_EXCEPTION: '
        "Close date must be in the future</span></details>"
    ) in html


def test_readers_cannot_open_the_editor(reader_client):
    OpportunityFactory(salesforce_id=OPP)
    assert reader_client.get(f"/opportunities/{OPP}/edit/").status_code == 403
    assert reader_client.post(f"/opportunities/{OPP}/edit/", {"em_confidence": "Green"}).status_code == 403


def test_opportunity_list_query_count_does_not_grow_with_rows(reader_client):
    OpportunityFactory(engagement_manager=EngagementManagerFactory())
    with CaptureQueriesContext(connection) as one:
        reader_client.get("/opportunities/")
    for _ in range(30):
        opportunity = OpportunityFactory(engagement_manager=EngagementManagerFactory())
        SalesforceWrite.objects.create(opportunity=opportunity, changes={"em_confidence": "Green"})
    with CaptureQueriesContext(connection) as many:
        reader_client.get("/opportunities/")
    assert len(many) == len(one)


def test_an_em_changes_the_engagement_manager_by_name_and_salesforce_gets_the_user_id(em_client):
    OpportunityFactory(salesforce_id=OPP)
    new_em = EngagementManagerFactory(name="Tom Becker", salesforce_user_id="005000000000077XYZ")
    editor = em_client.get(f"/opportunities/{OPP}/edit/").content.decode()
    assert f'<option value="{new_em.pk}">Tom Becker</option>' in editor
    response = em_client.post(
        f"/opportunities/{OPP}/edit/",
        {"engagement_manager": new_em.pk, "em_confidence": "Grey"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200 and "Tom Becker" in response.content.decode()
    assert SalesforceWrite.objects.get().changes == {"engagement_manager": "005000000000077XYZ"}


@pytest.mark.parametrize(
    "link",
    [
        "https://gitlab.example.com/other/project/-/issues/12",
        "javascript:alert(1)",
        "https://gitlab.example.com/group/ps-plan/-/merge_requests/3",
    ],
)
def test_the_scoping_issue_link_must_be_an_issue_of_the_configured_project(em_client, settings, link):
    settings.GITLAB_URL, settings.GITLAB_PROJECT = "https://gitlab.example.com", "group/ps-plan"
    OpportunityFactory(salesforce_id=OPP)
    response = em_client.post(
        f"/opportunities/{OPP}/edit/",
        {"em_confidence": "Grey", "scoping_issue_link": link},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 400
    assert (
        "Must be the URL of an issue in https://gitlab.example.com/group/ps-plan" in response.content.decode()
    )
    assert not SalesforceWrite.objects.exists()


def test_a_project_issue_link_is_saved_and_queued(em_client, settings):
    settings.GITLAB_URL, settings.GITLAB_PROJECT = "https://gitlab.example.com", "group/ps-plan"
    OpportunityFactory(salesforce_id=OPP)
    link = "https://gitlab.example.com/group/ps-plan/-/issues/42"
    response = em_client.post(
        f"/opportunities/{OPP}/edit/",
        {"em_confidence": "Grey", "scoping_issue_link": link},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert SalesforceWrite.objects.get().changes == {"scoping_issue_link": link}


def test_the_issue_page_panel_answers_with_the_panel_and_a_message(em_client):
    OpportunityFactory(salesforce_id=OPP, name="Initech")
    response = em_client.post(
        f"/opportunities/{OPP}/edit/?layout=panel",
        {"em_confidence": "Red", "em_confidence_rationale": "Budget frozen"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert f'id="ps-panel-{OPP}"' in html and "Initech saved" in html and "sending…" in html


def test_the_em_filter_offers_people_by_name(reader_client):
    EngagementManagerFactory(name="Priya Raman", gitlab_username="praman")
    html = reader_client.get("/opportunities/").content.decode()
    assert '<option value="praman">Priya Raman</option>' in html
    assert reader_client.get("/opportunities/?engagement_manager=praman").status_code == 200


def test_the_table_downloads_as_csv_with_the_pages_filters(reader_client):
    OpportunityFactory(name="Acme - Migration", em_confidence="Green")
    OpportunityFactory(name="Globex - Upgrade", em_confidence="Red", em_confidence_rationale="No budget")
    OpportunityFactory(name="Closed deal", em_confidence="Red", is_closed=True)

    page = reader_client.get("/opportunities/?em_confidence=Red").content.decode()
    response = reader_client.get("/opportunities/?em_confidence=Red&csv=1")

    assert 'href="?em_confidence=Red&amp;csv=1"' in page
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [(row["Opportunity"], row["EM confidence"]) for row in rows] == [("Globex - Upgrade", "Red")]
