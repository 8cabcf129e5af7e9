"""Schemathesis over the whole schema, in-process, positive and negative data, every check.

Run on its own with `pytest tests/api/test_fuzzing.py`; the examples are bounded and seeded so the
run takes seconds and fails the same way twice.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from opportunities.choices import EMConfidence
from psplan.urls import api_v1
from psplan.wsgi import application
from scoping.choices import IssueState
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory

SC = "Services Calculator"
# Rules that depend on stored data or on today's date, which no JSON schema can state: an EM username
# must exist (and be linked), a keep-open date must not be past, Red and Amber need a rationale that
# may already be stored, a scoping issue link must be an issue of the configured GitLab project.
# Valid-looking input may get a 400 naming exactly these fields; nothing else.
DATA_RULE_FIELDS = {"engagement_manager", "keep_open_until", "em_confidence_rationale", "scoping_issue_link"}


def _fill_database() -> None:
    """A few rows of each kind, with ids that generated ones hit: small iids, and the simplest
    string the Salesforce id pattern allows, which is what schemathesis tries first."""
    em = EngagementManagerFactory(gitlab_username="fuzzy")
    unlinked = EngagementManagerFactory(
        gitlab_username="unlinked", gitlab_user_id=None, salesforce_user_id=""
    )
    opportunity = OpportunityFactory(
        salesforce_id="0" * 15, engagement_manager=em, em_confidence=EMConfidence.GREEN
    )
    OpportunityFactory(engagement_manager=unlinked, is_closed=True, is_won=True)
    for iid, labels, state in [
        (1, [SC, "Open"], IssueState.OPENED),
        (2, [SC, "proposal::SOW_WIP", "Segment::SMB", "EM_Status::ToDo"], IssueState.OPENED),
        (3, [SC, "proposal::Closed_Won", "close_qtr::Q325"], IssueState.CLOSED),
        (4, [SC, "proposal::Closed_Lost", "close_qtr::Q425", "Public Sector US"], IssueState.CLOSED),
        (5, [SC, "proposal::On_hold"], IssueState.OPENED),
    ]:
        ScopingIssueFactory(
            iid=iid,
            labels=labels,
            state=state,
            engagement_manager=em,
            opportunity=opportunity if iid == 2 else None,
            last_activity_at=timezone.now() - timedelta(days=20 * iid),
        )


@pytest.fixture
def fuzz_token(db, em_user, token_for) -> str:
    _fill_database()
    return token_for(em_user)


@pytest.fixture(autouse=True)
def requests_keep_the_test_transaction():
    """Django closes the connection after each request, which on PostgreSQL ends the test's
    transaction; its own test client unhooks this the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _served_schema() -> dict:
    """What /api/schema/ serves, built without a request: loading happens at import, before any database."""
    raw = SchemaGenerator(patterns=api_v1).get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(raw))


schema = schemathesis.openapi.from_dict(_served_schema())
schema.app = application
# PostgreSQL cannot store NUL, so the API refuses it in any string with a 400 naming the field.
schema.config.generation.update(allow_x00=False, modes=["positive", "negative"])


def valid_data_is_accepted_unless_a_data_rule_refuses(ctx, response, case):
    """positive_data_acceptance, except a 400 that names only the DATA_RULE_FIELDS."""
    if response.status_code == 400 and case.meta is not None and case.meta.generation.mode.is_positive:
        named = set(json.loads(response.content))
        assert named <= DATA_RULE_FIELDS, f"schema-valid input refused for {sorted(named - DATA_RULE_FIELDS)}"
        return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_to_its_schema_under_fuzzing(case, fuzz_token):
    case.call_and_validate(
        headers={"Authorization": f"Token {fuzz_token}"},
        excluded_checks=[positive_data_acceptance],
        additional_checks=[valid_data_is_accepted_unless_a_data_rule_refuses],
    )
