"""The OpenAPI schema and the Swagger UI page: signed-in only, complete about errors, no CDN."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

SCHEMA = "/api/schema/?format=json"


@pytest.fixture
def schema(reader_api) -> dict:
    response = reader_api.get(SCHEMA)
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield method.upper(), path, operation


def test_the_schema_is_openapi_3_and_describes_every_contract_endpoint(schema):
    assert schema["openapi"].startswith("3.")
    assert {(method, path) for method, path, _ in _operations(schema)} == {
        ("GET", "/api/v1/scoping-issues/"),
        ("GET", "/api/v1/scoping-issues/{iid}/"),
        ("PATCH", "/api/v1/scoping-issues/{iid}/"),
        ("GET", "/api/v1/opportunities/"),
        ("GET", "/api/v1/opportunities/{salesforce_id}/"),
        ("PATCH", "/api/v1/opportunities/{salesforce_id}/"),
        ("GET", "/api/v1/engagement-managers/"),
        ("GET", "/api/v1/reports/win-rate/"),
        ("GET", "/api/v1/reports/forecast/"),
    }


def test_every_operation_documents_the_errors_it_can_answer(schema):
    for method, path, operation in _operations(schema):
        codes = set(operation["responses"])
        assert {"200", "401", "429"} <= codes, (method, path)
        if method == "PATCH":
            assert {"400", "403", "404", "415"} <= codes, (method, path)
        if "{" in path or path.endswith(("issues/", "opportunities/", "managers/")):
            assert "404" in codes, (method, path)
        if any(p["in"] == "query" for p in operation.get("parameters", [])):
            assert "400" in codes, (method, path)


def test_the_schema_states_the_filter_values(schema):
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/scoping-issues/"]["get"]["parameters"]}
    assert "Ready For Approval" in parameters["stage"]["schema"]["enum"]
    assert parameters["close_qtr"]["schema"]["pattern"] == "^[Qq][1-4][0-9]{2}$"
    assert parameters["stale"]["schema"]["type"] == "boolean"
    assert parameters["page_size"]["schema"]["maximum"] == 200
    assert {
        "stage",
        "segment",
        "engagement_manager",
        "em_status",
        "state",
        "close_qtr",
        "stale",
        "search",
    } <= set(parameters)


def test_the_schema_needs_sign_in(anonymous_api):
    assert anonymous_api.get(SCHEMA).status_code == 401


def test_the_docs_page_needs_sign_in(client):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response.url.startswith("/login/")


def test_the_docs_page_is_served_from_installed_packages(reader_client):
    response = reader_client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    # The start-up script is a file of its own (the CSP allows no inline script); it loads the schema.
    script = reader_client.get("/api/docs/?script=")
    assert script["Content-Type"].startswith("application/javascript")
    assert "/api/schema/" in script.content.decode()
    assert "<script>" not in html and 'href="/"' in html


def test_the_navigation_links_to_the_docs_and_the_token_page(reader_client):
    html = reader_client.get("/issues/").content.decode()
    assert 'href="/api/docs/"' in html and 'href="/api/token/"' in html
