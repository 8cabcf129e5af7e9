"""No side doors: admin changes PS fields only through the services (history and a queued write), and a
URL from GitLab or Salesforce that is not http(s) is never stored, so it never becomes a link."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from opportunities.models import Opportunity, OpportunityChange, SalesforceWrite
from opportunities.salesforce_sync import pull_opportunities
from scoping.choices import ProblemKind
from scoping.gitlab_sync import sync_issues
from scoping.models import DataQualityProblem, GitLabWrite, IssueChange, ScopingIssue
from tests.factories import OpportunityFactory, ScopingIssueFactory
from tests.scoping.conftest import SCOPING, WEBHOOK_SECRET

pytestmark = pytest.mark.django_db
HOSTILE = "javascript:fetch('/api/token/',{method:'POST'})"


def test_changing_em_status_in_admin_queues_the_gitlab_write_and_records_who(admin_client, admin_user):
    issue = ScopingIssueFactory(labels=[SCOPING, "proposal::SOW_WIP"])
    url = reverse("admin:scoping_scopingissue_change", args=[issue.pk])

    response = admin_client.post(
        url,
        {
            "new_stage": "SOW_WIP",
            "new_segment": "",
            "new_em_status": "ToDo",
            "keep_open_until": "",
            "keep_open_reason": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    write = GitLabWrite.objects.get()
    assert (write.intent, write.source, write.created_by) == ({"em_status": "ToDo"}, "admin", admin_user)
    assert IssueChange.objects.get().write == write
    issue.refresh_from_db()
    assert issue.em_status == "ToDo"


def test_mirrored_issue_fields_cannot_be_changed_in_admin(admin_client):
    issue = ScopingIssueFactory(title="Original", labels=[SCOPING, "proposal::SOW_WIP"], state="opened")
    url = reverse("admin:scoping_scopingissue_change", args=[issue.pk])

    admin_client.post(
        url,
        {
            "title": "Hacked",
            "state": "closed",
            "labels": '["x"]',
            "new_stage": "SOW_WIP",
            "new_segment": "",
            "new_em_status": "",
            "keep_open_until": "",
            "keep_open_reason": "",
        },
    )

    issue.refresh_from_db()
    assert (issue.title, issue.state, issue.labels) == ("Original", "opened", [SCOPING, "proposal::SOW_WIP"])
    assert not GitLabWrite.objects.exists()
    assert admin_client.get(reverse("admin:scoping_scopingissue_add")).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:scoping_scopingissue_delete", args=[issue.pk]), {"post": "yes"}
        ).status_code
        == 403
    )


def test_the_ps_section_changed_in_admin_is_queued_for_salesforce(admin_client, admin_user):
    opportunity = OpportunityFactory(name="Original", em_confidence="Grey")
    url = reverse("admin:opportunities_opportunity_change", args=[opportunity.pk])

    response = admin_client.post(
        url,
        {
            "name": "Hacked",
            "engagement_manager": "",
            "em_confidence": "Green",
            "em_confidence_rationale": "",
            "scoping_issue_link": "",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    opportunity.refresh_from_db()
    assert (opportunity.name, opportunity.em_confidence) == ("Original", "Green")
    write = SalesforceWrite.objects.get()
    assert (write.changes, write.source, write.created_by) == (
        {"em_confidence": "Green"},
        "admin",
        admin_user,
    )
    assert OpportunityChange.objects.get().write == write


def test_queued_writes_and_history_are_read_only_in_admin(admin_client):
    write = GitLabWrite.objects.create(issue=ScopingIssueFactory(), intent={"stage": "SOW_WIP"})
    url = reverse("admin:scoping_gitlabwrite_change", args=[write.pk])

    admin_client.post(url, {"status": "delivered"})

    write.refresh_from_db()
    assert write.status == "pending"


def test_a_javascript_web_url_from_the_api_is_not_stored_and_is_reported(gitlab_on, gitlab_client):
    iid = gitlab_on.add_issue(labels=[SCOPING, "Open"])["iid"]
    gitlab_on.override_web_url(iid, HOSTILE)

    sync_issues(full=True, client=gitlab_client)

    issue = ScopingIssue.objects.get(iid=iid)
    assert issue.web_url == ""
    problem = DataQualityProblem.objects.get(issue=issue, kind=ProblemKind.UNSAFE_URL)
    assert "not http(s)" in problem.message


def test_a_javascript_url_in_a_webhook_never_reaches_a_page(
    client, settings, gitlab_on, admin_client, django_capture_on_commit_callbacks
):
    settings.GITLAB_ENABLED = False  # the payload is applied as it comes
    iid = gitlab_on.add_issue(labels=[SCOPING, "Open"])["iid"]
    payload = gitlab_on.issue_hook(iid)
    payload["object_attributes"]["url"] = HOSTILE

    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(
            "/webhooks/gitlab/",
            json.dumps(payload),
            content_type="application/json",
            headers={
                "X-Gitlab-Event": "Issue Hook",
                "X-Gitlab-Token": WEBHOOK_SECRET,
                "X-Gitlab-Event-UUID": "x",
            },
        )

    assert response.json() == {"status": "queued"}
    assert ScopingIssue.objects.get(iid=iid).web_url == ""
    for page in (
        "/sync/",
        "/issues/",
        "/boards/?engagement_manager=all",
        "/triage/",
        "/reports/data-quality/",
    ):
        assert "javascript:" not in admin_client.get(page).content.decode(), page


def test_a_salesforce_link_that_is_not_http_is_kept_aside_and_not_linked(salesforce):
    opportunity_id = salesforce.add_opportunity(Scoping_Issue_Link__c=HOSTILE)

    pull_opportunities(full=True)

    opportunity = Opportunity.objects.get(salesforce_id=opportunity_id)
    assert (opportunity.scoping_issue_link, opportunity.refused_link) == ("", HOSTILE)
