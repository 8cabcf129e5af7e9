"""Who may do what: anonymous 401, every signed-in role reads, engagement managers and staff write."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from opportunities.models import Opportunity, SalesforceWrite
from psplan.api import PerUserRateThrottle
from psplan.models import ApiToken
from scoping.models import GitLabWrite, ScopingIssue
from tests.factories import OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db

SALESFORCE_ID = "006000000000042AAA"
READS = [
    "/api/v1/scoping-issues/",
    "/api/v1/scoping-issues/7/",
    "/api/v1/opportunities/",
    f"/api/v1/opportunities/{SALESFORCE_ID}/",
    "/api/v1/engagement-managers/",
    "/api/v1/reports/win-rate/",
    "/api/v1/reports/forecast/",
    "/api/schema/",
]
WRITES = [
    ("/api/v1/scoping-issues/7/", {"em_status": "Waiting"}),
    (f"/api/v1/opportunities/{SALESFORCE_ID}/", {"em_confidence": "Green"}),
]


@pytest.fixture(autouse=True)
def records(db):
    OpportunityFactory(salesforce_id=SALESFORCE_ID)
    ScopingIssueFactory(iid=7)


@pytest.mark.parametrize("path", READS)
def test_an_anonymous_read_gets_401_with_a_token_challenge(anonymous_api, path):
    response = anonymous_api.get(path)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_an_anonymous_write_gets_401_and_changes_nothing(anonymous_api, path, body):
    assert anonymous_api.patch(path, body, format="json").status_code == 401
    assert not GitLabWrite.objects.exists() and not SalesforceWrite.objects.exists()


def test_an_unknown_token_gets_401():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/scoping-issues/")
    assert response.status_code == 401
    assert "detail" in response.json()


@pytest.mark.parametrize("role", ["reader_api", "em_api", "admin_api"])
@pytest.mark.parametrize("path", READS)
def test_every_signed_in_role_reads_every_endpoint(request, role, path):
    assert request.getfixturevalue(role).get(path).status_code == 200


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_a_reader_may_not_write(reader_api, path, body):
    response = reader_api.patch(path, body, format="json")
    assert response.status_code == 403
    assert "detail" in response.json()
    assert ScopingIssue.objects.get(iid=7).em_status == ""
    assert Opportunity.objects.get(salesforce_id=SALESFORCE_ID).em_confidence == "Grey"
    assert not GitLabWrite.objects.exists() and not SalesforceWrite.objects.exists()


@pytest.mark.parametrize("role", ["em_api", "admin_api"])
@pytest.mark.parametrize(("path", "body"), WRITES)
def test_engagement_managers_and_staff_write(request, role, path, body):
    response = request.getfixturevalue(role).patch(path, body, format="json")
    assert response.status_code == 200
    assert (response.json()["write_back"]["status"], response.json()["write_back"]["error"]) == (
        "pending",
        None,
    )


def test_a_browser_session_reads_the_api(reader_client):
    assert reader_client.get("/api/v1/scoping-issues/").status_code == 200


def test_a_browser_session_must_send_its_csrf_token_to_write(em_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(em_user)
    response = client.patch("/api/v1/scoping-issues/7/", {"em_status": "Waiting"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


@pytest.mark.parametrize("method", ["put", "delete", "post"])
def test_methods_the_api_does_not_offer_get_405(em_api, method):
    response = getattr(em_api, method)("/api/v1/scoping-issues/7/", {}, format="json")
    assert response.status_code == 405
    assert "PATCH" in response["Allow"]


def test_an_unknown_api_path_gets_a_json_404_and_a_hint_about_the_slash(reader_api):
    response = reader_api.get("/api/v1/scoping-issues")
    assert response.status_code == 404
    assert response.json()["detail"].endswith("/api/v1/scoping-issues/")
    assert reader_api.get("/api/v1/nothing-here/").json() == {"detail": "No such API endpoint."}


def test_each_user_is_throttled_on_their_own(monkeypatch, reader_api, em_api):
    monkeypatch.setattr(PerUserRateThrottle, "rate", "3/minute", raising=False)
    assert [reader_api.get("/api/v1/scoping-issues/").status_code for _ in range(3)] == [200] * 3
    refused = reader_api.get("/api/v1/scoping-issues/")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert em_api.get("/api/v1/scoping-issues/").status_code == 200


def test_a_token_deleted_elsewhere_stops_working_at_once(api_client_for, reader):
    client = api_client_for(reader)
    assert client.get("/api/v1/scoping-issues/").status_code == 200
    ApiToken.objects.filter(user=reader).delete()
    assert client.get("/api/v1/scoping-issues/").status_code == 401


def test_a_deactivated_user_s_token_stops_working_at_once(api_client_for, reader):
    client = api_client_for(reader)
    assert client.get("/api/v1/scoping-issues/").status_code == 200
    reader.is_active = False
    reader.save()
    assert client.get("/api/v1/scoping-issues/").status_code == 401


def test_a_client_that_only_takes_xml_gets_406(reader_api):
    response = reader_api.get("/api/v1/scoping-issues/", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406


def test_a_browser_accept_header_gets_json(reader_api):
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = reader_api.get("/api/v1/scoping-issues/", HTTP_ACCEPT=accept)
    assert (response.status_code, response["Content-Type"]) == (200, "application/json")
