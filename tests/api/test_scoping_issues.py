"""GET /api/v1/scoping-issues/ and GET|PATCH /api/v1/scoping-issues/{iid}/."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from psplan.fiscal import quarter_code
from psplan.queue import WriteStatus
from scoping.choices import IssueState, Stage
from scoping.gitlab_sync import sync_issues
from scoping.models import GitLabWrite, IssueChange, ScopingIssue
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db

SC = "Services Calculator"
LIST = "/api/v1/scoping-issues/"


def _iids(response) -> list[int]:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == len(body["results"])
    return [item["iid"] for item in body["results"]]


def test_an_issue_has_the_contract_fields(reader_api):
    em = EngagementManagerFactory(gitlab_username="praman", name="Priya Raman")
    opportunity = OpportunityFactory(salesforce_id="006000000000001AAA")
    ScopingIssueFactory(
        iid=12,
        title="Scoping: Acme",
        state=IssueState.CLOSED,
        labels=[SC, "proposal::Closed_Won", "close_qtr::Q325", "Segment::Ent_EAST", "EM_Status::ToDo"],
        engagement_manager=em,
        opportunity=opportunity,
    )
    item = reader_api.get(LIST).json()["results"][0]
    assert {key: item[key] for key in ("iid", "title", "state", "stage", "outcome", "close_qtr")} == {
        "iid": 12,
        "title": "Scoping: Acme",
        "state": "closed",
        "stage": "Closed_Won",
        "outcome": "won",
        "close_qtr": "Q325",
    }
    assert (item["segment"], item["em_status"], item["public_sector"]) == ("Ent_EAST", "ToDo", False)
    assert (item["engagement_manager"], item["engagement_manager_name"]) == ("praman", "Priya Raman")
    assert item["opportunity"] == "006000000000001AAA"
    assert item["labels"] == [
        SC,
        "proposal::Closed_Won",
        "close_qtr::Q325",
        "Segment::Ent_EAST",
        "EM_Status::ToDo",
    ]
    assert item["web_url"].endswith("/-/issues/12")
    assert item["last_activity_at"].endswith("Z")
    assert (item["stale"], item["going_stale"], item["keep_open_until"]) == (False, False, None)


def test_an_issue_without_labels_shows_nulls_not_empty_strings(reader_api):
    ScopingIssueFactory(labels=[SC])
    item = reader_api.get(LIST).json()["results"][0]
    assert (item["stage"], item["outcome"], item["close_qtr"], item["segment"], item["em_status"]) == (
        "Open",
        None,
        None,
        None,
        None,
    )
    assert (item["engagement_manager"], item["opportunity"]) == (None, None)


@pytest.fixture
def three_issues():
    em = EngagementManagerFactory(gitlab_username="praman")
    ScopingIssueFactory(
        iid=1, title="sow", description="a needle here", labels=[SC, "proposal::SOW_WIP", "Segment::SMB"]
    )
    ScopingIssueFactory(
        iid=2,
        title="won",
        state=IssueState.CLOSED,
        labels=[SC, "proposal::Closed_Won", "close_qtr::Q325", "Public Sector US"],
    )
    ScopingIssueFactory(iid=3, title="open", labels=[SC, "Open", "EM_Status::Waiting"], engagement_manager=em)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("stage=SOW_WIP", [1]),
        ("stage=Closed_Won", [2]),
        ("segment=SMB", [1]),
        ("em_status=Waiting", [3]),
        ("state=closed", [2]),
        ("state=opened", [3, 1]),
        ("close_qtr=Q325", [2]),
        ("close_qtr=q325", [2]),
        ("search=needle", [1]),
        ("search=%231", [1]),
        ("engagement_manager=praman", [3]),
        ("engagement_manager=PRaman", [3]),
        ("public_sector=true", [2]),
        ("stage=&segment=", [3, 2, 1]),
        ("", [3, 2, 1]),
    ],
)
def test_filters_narrow_the_list(reader_api, three_issues, query, expected):
    assert _iids(reader_api.get(f"{LIST}?{query}")) == expected


def test_the_stale_filter_and_flags(reader_api):
    now = timezone.now()
    ScopingIssueFactory(iid=1, last_activity_at=now - timedelta(days=70))
    ScopingIssueFactory(iid=2, last_activity_at=now - timedelta(days=55))
    ScopingIssueFactory(iid=3, last_activity_at=now - timedelta(days=2))
    ScopingIssueFactory(iid=4, last_activity_at=now - timedelta(days=90), keep_open_until=now.date())
    assert _iids(reader_api.get(f"{LIST}?stale=true")) == [1]
    assert _iids(reader_api.get(f"{LIST}?stale=false")) == [4, 3, 2]
    flags = {i["iid"]: (i["stale"], i["going_stale"]) for i in reader_api.get(LIST).json()["results"]}
    assert flags == {1: (True, False), 2: (False, True), 3: (False, False), 4: (False, False)}


def test_issues_gone_from_gitlab_are_not_listed(reader_api):
    ScopingIssueFactory(iid=1)
    ScopingIssueFactory(iid=2, removed_at=timezone.now())
    assert _iids(reader_api.get(LIST)) == [1]
    assert reader_api.get(f"{LIST}2/").status_code == 404


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("stage=Done", "stage"),
        ("segment=Ent_Mars", "segment"),
        ("em_status=Later", "em_status"),
        ("state=open", "state"),
        ("close_qtr=Q523", "close_qtr"),
        ("close_qtr=Q3-23", "close_qtr"),
        ("close_qtr=%20Q323", "close_qtr"),
        ("stale=maybe", "stale"),
        ("stale=1", "stale"),
        ("public_sector=yes", "public_sector"),
        ("engagement_manager=nobody", "engagement_manager"),
        ("engagement_manager=50%25", "engagement_manager"),
        ("search=a%00b", "search"),
        ("page_size=201", "page_size"),
        ("page_size=0", "page_size"),
        ("page_size=ten", "page_size"),
        ("page=first", "page"),
        ("page=-1", "page"),
    ],
)
def test_a_bad_filter_value_gets_400_naming_the_parameter(reader_api, query, field):
    ScopingIssueFactory()
    response = reader_api.get(f"{LIST}?{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


@pytest.mark.parametrize("page", ["2", "1000000000", "14767743537580141516423168"])
def test_a_page_past_the_end_is_404(reader_api, page):
    ScopingIssueFactory()
    assert reader_api.get(f"{LIST}?page={page}").status_code == 404


def test_pages_are_newest_first_and_link_to_each_other(reader_api):
    for iid in range(1, 6):
        ScopingIssueFactory(iid=iid)
    first = reader_api.get(f"{LIST}?page_size=2").json()
    assert (first["count"], first["previous"], [i["iid"] for i in first["results"]]) == (5, None, [5, 4])
    second = reader_api.get(first["next"]).json()
    assert [i["iid"] for i in second["results"]] == [3, 2]
    assert second["previous"].endswith("page_size=2")


def _count_queries(client, path: str) -> int:
    cache.clear()  # so both counts include the token lookup
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def test_the_query_count_does_not_grow_with_rows(reader_api):
    em = EngagementManagerFactory()
    ScopingIssueFactory(engagement_manager=em, opportunity=OpportunityFactory())
    one = _count_queries(reader_api, LIST)
    for _ in range(49):
        ScopingIssueFactory(engagement_manager=EngagementManagerFactory(), opportunity=OpportunityFactory())
    assert _count_queries(reader_api, LIST) == one
    assert len(reader_api.get(LIST).json()["results"]) == 50


# --- one issue ---------------------------------------------------------------------------------


def test_one_issue_adds_description_assignees_and_the_last_write(reader_api):
    issue = ScopingIssueFactory(
        iid=9, description="Details", assignee_usernames=["praman"], author_username="sales"
    )
    item = reader_api.get(f"{LIST}9/").json()
    assert (item["iid"], item["description"], item["assignees"], item["author"]) == (
        9,
        "Details",
        ["praman"],
        "sales",
    )
    assert item["write_back"] is None
    failed_at = timezone.now()
    GitLabWrite.objects.create(
        issue=issue, status=WriteStatus.FAILED, failed_at=failed_at, last_error="403 Forbidden"
    )
    assert reader_api.get(f"{LIST}9/").json()["write_back"] == {
        "status": "failed",
        "error": "403 Forbidden",
        "since": failed_at.isoformat().replace("+00:00", "Z"),
    }
    assert reader_api.get(LIST).json()["results"][0]["write_back"]["status"] == "failed"


@pytest.mark.parametrize("path", [f"{LIST}404/", f"{LIST}99999999999999999999/", f"{LIST}abc/", f"{LIST}-1/"])
def test_an_unknown_issue_is_404(reader_api, em_api, path):
    ScopingIssueFactory(iid=1)
    assert reader_api.get(path).status_code == 404
    assert em_api.patch(path, {"stage": "Open"}, format="json").status_code == 404


# --- PATCH goes through the services and the outbox ------------------------------------------------


def test_patching_the_stage_swaps_labels_and_queues_the_gitlab_write(em_api, em_user):
    ScopingIssueFactory(iid=5, labels=[SC, "proposal::Strawman_WIP", "someone-else"])
    response = em_api.patch(f"{LIST}5/", {"stage": "SOW_WIP"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["stage"], body["write_back"]["status"], body["write_back"]["error"]) == (
        "SOW_WIP",
        "pending",
        None,
    )
    assert body["labels"] == [SC, "someone-else", "proposal::SOW_WIP"]
    write = GitLabWrite.objects.get()
    assert (write.intent, write.created_by, write.source) == (
        {"stage": "SOW_WIP", "state": "opened"},
        em_user,
        "api",
    )
    assert ScopingIssue.objects.get(iid=5).stage == Stage.SOW_WIP


def test_patching_to_closed_won_closes_the_issue_with_this_quarter(em_api):
    ScopingIssueFactory(iid=5, labels=[SC, "proposal::Approved"])
    body = em_api.patch(f"{LIST}5/", {"stage": "Closed_Won"}, format="json").json()
    this_quarter = quarter_code(timezone.localdate())
    assert (body["state"], body["outcome"], body["close_qtr"]) == ("closed", "won", this_quarter)
    assert GitLabWrite.objects.get().intent == {
        "stage": "Closed_Won",
        "state": "closed",
        "close_qtr": this_quarter,
    }


def test_patching_several_fields_queues_one_write_each_and_reports_them_together(em_api):
    em = EngagementManagerFactory(gitlab_username="jdoe", gitlab_user_id=4242)
    ScopingIssueFactory(iid=5, labels=[SC, "Open", "Segment::SMB"])
    body = em_api.patch(
        f"{LIST}5/",
        {
            "stage": "Awaiting_Discovery",
            "segment": "MM_EMEA",
            "em_status": "Waiting",
            "engagement_manager": "JDoe",
        },
        format="json",
    ).json()
    assert (body["stage"], body["segment"], body["em_status"], body["engagement_manager"]) == (
        "Awaiting_Discovery",
        "MM_EMEA",
        "Waiting",
        "jdoe",
    )
    assert (body["write_back"]["status"], body["write_back"]["error"]) == ("pending", None)
    assert list(GitLabWrite.objects.order_by("id").values_list("intent", flat=True)) == [
        {"stage": "Awaiting_Discovery", "state": "opened"},
        {"segment": "MM_EMEA"},
        {"em_status": "Waiting"},
        {"assignee_ids": [4242]},
    ]
    assert ScopingIssue.objects.get(iid=5).engagement_manager == em


def test_null_clears_the_segment_em_status_and_engagement_manager(em_api):
    em = EngagementManagerFactory(gitlab_username="jdoe")
    ScopingIssueFactory(iid=5, labels=[SC, "Segment::SMB", "EM_Status::ToDo"], engagement_manager=em)
    body = em_api.patch(
        f"{LIST}5/", {"segment": None, "em_status": None, "engagement_manager": None}, format="json"
    ).json()
    assert (body["segment"], body["em_status"], body["engagement_manager"]) == (None, None, None)
    assert list(GitLabWrite.objects.order_by("id").values_list("intent", flat=True)) == [
        {"segment": None},
        {"em_status": None},
        {"assignee_ids": []},
    ]


def test_setting_what_is_already_there_queues_nothing(em_api):
    ScopingIssueFactory(iid=5, labels=[SC, "proposal::SOW_WIP"])
    body = em_api.patch(f"{LIST}5/", {"stage": "SOW_WIP"}, format="json").json()
    assert body["write_back"] is None
    assert not GitLabWrite.objects.exists()


def test_keep_open_until_is_local_and_audited(em_api, em_user):
    ScopingIssueFactory(iid=5)
    until = timezone.localdate() + timedelta(days=30)
    body = em_api.patch(
        f"{LIST}5/",
        {"keep_open_until": until.isoformat(), "keep_open_reason": "Waiting on legal"},
        format="json",
    ).json()
    assert (body["keep_open_until"], body["write_back"]) == (until.isoformat(), None)
    change = IssueChange.objects.get()
    assert (change.new_value, change.actor, change.note, change.source) == (
        until.isoformat(),
        em_user,
        "Waiting on legal",
        "api",
    )
    assert not GitLabWrite.objects.exists()
    em_api.patch(f"{LIST}5/", {"keep_open_until": None}, format="json")
    assert ScopingIssue.objects.get(iid=5).keep_open_until is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stage": "Done"}, "stage"),
        ({"stage": None}, "stage"),
        ({"stage": 3}, "stage"),
        ({"segment": "Ent_Mars"}, "segment"),
        ({"em_status": "Later"}, "em_status"),
        ({"engagement_manager": "nobody"}, "engagement_manager"),
        ({"engagement_manager": 12}, "engagement_manager"),
        ({"engagement_manager": "unlinked"}, "engagement_manager"),
        ({"keep_open_until": "31/12/2030"}, "keep_open_until"),
        ({"keep_open_until": "20301231"}, "keep_open_until"),
        ({"keep_open_until": "2030-02-30"}, "keep_open_until"),
        ({"keep_open_until": "2020-01-01"}, "keep_open_until"),
        ({"keep_open_until": "2030-01-01", "keep_open_reason": 5}, "keep_open_reason"),
    ],
)
def test_bad_input_gets_400_naming_the_field_and_changes_nothing(em_api, body, field):
    EngagementManagerFactory(gitlab_username="unlinked", gitlab_user_id=None)
    ScopingIssueFactory(iid=5, labels=[SC, "proposal::SOW_WIP"])
    response = em_api.patch(f"{LIST}5/", {"em_status": "Waiting", **body}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert ScopingIssue.objects.get(iid=5).em_status == ""
    assert not GitLabWrite.objects.exists() and not IssueChange.objects.exists()


@pytest.mark.parametrize("body", ["not json", "[1, 2]"])
def test_a_body_that_is_not_a_json_object_gets_400(em_api, body):
    ScopingIssueFactory(iid=5)
    response = em_api.patch(f"{LIST}5/", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()


def test_a_form_encoded_body_gets_415(em_api):
    ScopingIssueFactory(iid=5)
    response = em_api.patch(f"{LIST}5/", "stage=Open", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415


@pytest.mark.django_db(transaction=True)
def test_the_patch_answer_shows_a_delivery_that_happened_on_commit(gitlab_on, em_api):
    """With tasks running in-process, delivery runs when the change commits, before the answer is built."""
    iid = gitlab_on.add_issue(labels=[SC, "proposal::SOW_WIP"])["iid"]
    sync_issues(full=True)
    gitlab_on.fail_next(403, method="PUT", message="403 Forbidden - You are not allowed to edit this issue")

    body = em_api.patch(f"{LIST}{iid}/", {"stage": "Approved"}, format="json").json()

    assert body["write_back"]["status"] == "failed"
    assert "You are not allowed to edit this issue" in body["write_back"]["error"]
    assert body["stage"] == "SOW_WIP"  # back to what GitLab has


def test_the_list_answers_csv_with_the_same_rows_filters_and_columns(reader_api):
    em = EngagementManagerFactory(gitlab_username="jdoe", name="Jo Doe")
    ScopingIssueFactory(
        iid=5, title="=HYPERLINK(evil)", labels=[SC, "proposal::SOW_WIP"], engagement_manager=em
    )
    ScopingIssueFactory(iid=6, labels=[SC, "Open"])
    GitLabWrite.objects.create(
        issue=ScopingIssue.objects.get(iid=5),
        intent={},
        status=WriteStatus.FAILED,
        last_error="403 Forbidden",
    )

    for response in (
        reader_api.get(f"{LIST}?stage=SOW_WIP&format=csv"),
        reader_api.get(f"{LIST}?stage=SOW_WIP", HTTP_ACCEPT="text/csv"),
    ):
        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"] == 'attachment; filename="scoping-issues.csv"'
        header, *rows = list(csv.reader(io.StringIO(response.content.decode())))
        assert header[:4] == ["Issue", "Title", "GitLab URL", "State"]
        assert "Engagement manager" in header and header[-1] == "Write-back"
        (row,) = rows
        cells = dict(zip(header, row, strict=True))
        assert (cells["Issue"], cells["Title"], cells["Stage"]) == ("5", "'=HYPERLINK(evil)", "SOW_WIP")
        assert (cells["Engagement manager"], cells["Write-back"]) == ("Jo Doe", "failed: 403 Forbidden")
        assert cells["Labels"] == f"{SC}; proposal::SOW_WIP"


def test_a_bad_filter_in_a_csv_request_is_still_a_json_400_naming_it(reader_api):
    response = reader_api.get(f"{LIST}?stage=Nope&format=csv")
    assert response.status_code == 400
    assert "stage" in response.json()
