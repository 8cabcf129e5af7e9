"""The stale and data-quality pages: what the rules would do, and each problem with where it is fixed."""

from __future__ import annotations

import csv
import io

import pytest

from scoping.models import GitLabWrite, RuleAction, ScopingIssue
from scoping.rules import apply_rules, going_stale
from tests.factories import OpportunityFactory, ScopingIssueFactory
from tests.reporting import datasets

pytestmark = pytest.mark.django_db
STALE = "/reports/stale/"
QUALITY = "/reports/data-quality/"


def _csv(client, url: str) -> list[list[str]]:
    response = client.get(url)
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


# --- Stale --------------------------------------------------------------------------------------------


def test_the_stale_page_lists_issues_going_stale_closed_by_the_rule_and_kept_open(reader_client):
    datasets.stale()
    context = reader_client.get(STALE).context
    assert [(row["iid"], row["goes_stale_at"].date().isoformat()) for row in context["going_stale"]] == [
        (201, "2026-12-25")
    ]
    assert [(row["iid"], row["went_stale_on"], row["rule_close_qtr"]) for row in context["closed"]] == [
        (206, "2026-11-14", "Q427")
    ]
    kept = [
        (
            row["iid"],
            row["keep_open_until"].isoformat(),
            row["reason"],
            row["set_by"],
            row["stale_without_it"],
        )
        for row in context["overrides"]
    ]
    assert kept == [(205, "2027-01-31", "Customer legal review until January", "Lee Leadership", True)]
    assert context["counts"] == {"overrides": 1, "closed_as_stale": 1}
    assert context["preview"] is None  # the rules run only when asked


def test_going_stale_lists_what_the_rules_flag_for_the_em(reader_client):
    datasets.stale()
    datasets.quiet_issue(209, "2026-10-28", opportunity=OpportunityFactory(is_closed=True, is_won=False))
    flagged = [(item.iid, item.goes_stale_at) for item in going_stale(as_of=datasets.NOW)]
    shown = [(row["iid"], row["goes_stale_at"]) for row in reader_client.get(STALE).context["going_stale"]]
    assert shown == flagged == [(201, datasets.at("2026-12-25"))]


def test_the_preview_shows_what_the_dry_run_plans_and_writes_nothing(reader_client):
    datasets.stale()
    actions_before = RuleAction.objects.count()
    preview = reader_client.get(f"{STALE}?preview=1").context["preview"]
    planned = apply_rules(as_of=datasets.NOW, dry_run=True)
    assert [row.iid for row in preview.rows] == [change.iid for change in planned.changes] == [208, 204, 203]
    assert [(row.rule, row.why) for row in preview.rows] == [
        (
            "Opportunity closed won",
            f"{ScopingIssue.objects.get(iid=208).opportunity.name} closed won on 2026-12-10",
        ),
        ("No activity", "No activity since 2026-08-01: stale since 2026-12-02"),
        ("No activity", "No activity since 2026-09-30: stale since 2026-11-30"),
    ]
    assert preview.rows[2].add_labels == ("proposal::Closed_Lost", "close_qtr::Q427")
    assert (GitLabWrite.objects.count(), RuleAction.objects.count()) == (0, actions_before)
    assert ScopingIssue.objects.get(iid=203).state == "opened"


def test_the_preview_flags_what_the_cap_holds_back(reader_client, settings):
    settings.PSPLAN_MAX_AUTO_CLOSES_PER_RUN = 2
    datasets.stale()
    response = reader_client.get(f"{STALE}?preview=1")
    assert [(row.iid, row.held_back) for row in response.context["preview"].rows] == [
        (208, False),
        (204, False),
        (203, True),
    ]
    assert "waits: over the cap" in response.content.decode()


def test_every_stale_table_downloads(reader_client):
    datasets.stale()
    assert _csv(reader_client, f"{STALE}?csv=going_stale")[1][:3] == ["201", "Scoping #201", "Priya Raman"]
    assert _csv(reader_client, f"{STALE}?csv=closed_as_stale")[1][:4] == [
        "206",
        "Scoping #206",
        "",
        "2026-11-14",
    ]
    overrides = _csv(reader_client, f"{STALE}?csv=overrides")
    assert overrides[1][3:6] == ["2027-01-31", "Customer legal review until January", "Lee Leadership"]
    preview = _csv(reader_client, f"{STALE}?csv=preview")
    assert [row[0] for row in preview[1:]] == ["208", "204", "203"]
    assert preview[3][2:5] == ["No activity", "No activity since 2026-09-30: stale since 2026-11-30", "Q427"]


@pytest.mark.parametrize("more", [0, 15])
def test_the_stale_page_query_count_does_not_grow(reader_client, django_assert_num_queries, more):
    datasets.stale()
    for _ in range(more):
        ScopingIssueFactory(last_activity_at=datasets.at("2026-10-26"), updated_at=datasets.at("2026-10-26"))
        ScopingIssueFactory(keep_open_until=datasets.NOW.date(), last_activity_at=datasets.at("2026-09-01"))
    # Session, user, role; going stale, closed, kept open, and two counts.
    with django_assert_num_queries(8):
        reader_client.get(STALE)


# --- Data quality -----------------------------------------------------------------------------------


def _section_rows(context) -> dict[str, list]:
    return {check.slug: list(rows) for check, _, rows in context["sections"]}


def test_each_check_finds_its_records_and_passes_the_look_alikes(reader_client):
    datasets.data_quality()
    context = reader_client.get(QUALITY).context
    counts = dict((check.slug, count) for check, count in context["checks"])
    assert counts == {
        "opportunity_without_em": 1,
        "issue_without_em": 1,
        "confidence_without_rationale": 2,
        "grey_closing_soon": 2,
        "outcome_without_close_qtr": 1,
        "two_workflow_labels": 1,
        "unknown_segment": 1,
        "link_disagreement": 1,
        "unlinked_em": 1,
        "other_problems": 1,
    }
    rows = _section_rows(context)
    assert [row["name"] for row in rows["opportunity_without_em"]] == ["No EM"]
    assert [row["name"] for row in rows["confidence_without_rationale"]] == [
        "Red, no reason",
        "Amber, blank reason",
    ]
    assert [row["name"] for row in rows["grey_closing_soon"]] == ["Grey overdue", "Grey soon"]
    assert [row["iid"] for row in rows["issue_without_em"]] == [301]
    assert [row["iid"] for row in rows["outcome_without_close_qtr"]] == [302]
    assert [row["iid"] for row in rows["two_workflow_labels"]] == [304]
    assert [row["iid"] for row in rows["unknown_segment"]] == [305]
    assert [row["iid"] for row in rows["link_disagreement"]] == [306]
    assert [row["iid"] for row in rows["other_problems"]] == [307]
    assert [row["name"] for row in rows["unlinked_em"]] == ["Nadia Unlinked"]


def test_each_row_links_to_where_it_is_fixed(admin_client):
    team = datasets.data_quality()
    page = admin_client.get(QUALITY).content.decode()
    for iid in (301, 302, 304, 305, 306, 307):
        assert f'href="/issues/{iid}/"' in page
    no_em = team["No EM"]
    assert f'href="https://login.salesforce.com/lightning/r/Opportunity/{no_em.salesforce_id}/view"' in page
    assert f"is_closed=false#opportunity-{no_em.salesforce_id}" in page
    red = team["Red, no reason"]
    assert (
        f'href="/opportunities/?close_quarter=Q128&amp;engagement_manager=praman&amp;is_closed=false#opportunity-{red.salesforce_id}"'
        in page
    )
    assert f'href="/admin/opportunities/engagementmanager/{team["nadia"].pk}/change/"' in page


def test_nothing_to_fix_says_so(reader_client):
    response = reader_client.get(QUALITY)
    assert response.context["total"] == 0
    assert "Nothing to fix: every check passes." in response.content.decode()


def test_every_check_downloads_all_its_rows(reader_client):
    team = datasets.data_quality()
    rows = _csv(reader_client, f"{QUALITY}?csv=grey_closing_soon")
    assert [row[1] for row in rows] == ["Opportunity", "Grey overdue", "Grey soon"]
    assert rows[1][0] == team["Grey overdue"].salesforce_id and rows[1][-1] == "USD"
    assert _csv(reader_client, f"{QUALITY}?csv=unlinked_em") == [
        ["Engagement manager", "Email"],
        ["Nadia Unlinked", team["nadia"].email],
    ]
    problems = _csv(reader_client, f"{QUALITY}?csv=two_workflow_labels")
    assert problems[1][:2] == ["two_workflow_labels", "304"]


@pytest.mark.parametrize("more", [0, 10])
def test_the_data_quality_page_query_count_does_not_grow_with_problems(
    reader_client, django_assert_num_queries, more
):
    datasets.data_quality()
    for _ in range(more):
        ScopingIssueFactory(labels=[datasets.SC, "Open"])
        datasets._deal(None, "2027-01-02", "Grey")
    # Session, user, role, four counts, and one query per check with rows (all ten here).
    with django_assert_num_queries(17):
        reader_client.get(QUALITY)
