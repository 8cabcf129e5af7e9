"""EM edits of the PS section: validated, recorded in history and queued for Salesforce together."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from opportunities.choices import EMConfidence
from opportunities.models import OpportunityChange, SalesforceWrite
from opportunities.services import update_ps_fields
from tests.factories import EngagementManagerFactory, OpportunityFactory

pytestmark = pytest.mark.django_db


def test_confidence_change_is_saved_queued_and_recorded(em_user):
    opportunity = OpportunityFactory()
    write = update_ps_fields(
        opportunity=opportunity,
        actor=em_user,
        em_confidence="Amber",
        em_confidence_rationale="Procurement slow",
    )
    opportunity.refresh_from_db()
    assert (opportunity.em_confidence, opportunity.em_confidence_rationale) == ("Amber", "Procurement slow")
    assert write.changes == {"em_confidence": "Amber", "em_confidence_rationale": "Procurement slow"}
    assert write.base_modstamp == opportunity.system_modstamp
    history = OpportunityChange.objects.order_by("field")
    assert [(c.field, c.old_value, c.new_value) for c in history] == [
        ("EMConfidence", "Grey", "Amber"),
        ("EMConfidenceRationale", "", "Procurement slow"),
    ]
    assert {(c.source, c.actor, c.write) for c in history} == {("page", em_user, write)}


def test_engagement_manager_is_sent_as_the_salesforce_user_id(em_user):
    em = EngagementManagerFactory(salesforce_user_id="005000000000042XYZ")
    write = update_ps_fields(opportunity=OpportunityFactory(), actor=em_user, engagement_manager=em)
    assert write.changes == {"engagement_manager": "005000000000042XYZ"}


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"em_confidence": "Purple"}, "em_confidence"),
        ({"em_confidence": "Red"}, "em_confidence_rationale"),
        ({"em_confidence": "Amber", "em_confidence_rationale": "   "}, "em_confidence_rationale"),
        ({"scoping_issue_link": "gitlab.com/issues/1"}, "scoping_issue_link"),
    ],
)
def test_invalid_edits_name_the_field_and_change_nothing(em_user, fields, bad_field):
    opportunity = OpportunityFactory()
    with pytest.raises(ValidationError) as error:
        update_ps_fields(opportunity=opportunity, actor=em_user, **fields)
    assert bad_field in error.value.message_dict
    opportunity.refresh_from_db()
    assert opportunity.em_confidence == EMConfidence.GREY
    assert not SalesforceWrite.objects.exists()


def test_an_em_without_a_salesforce_user_cannot_be_written_back(em_user):
    em = EngagementManagerFactory(salesforce_user_id="")
    with pytest.raises(ValidationError) as error:
        update_ps_fields(opportunity=OpportunityFactory(), actor=em_user, engagement_manager=em)
    assert "engagement_manager" in error.value.message_dict


def test_an_edit_that_changes_nothing_queues_nothing(em_user):
    opportunity = OpportunityFactory(em_confidence="Green")
    assert update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green") is None
    assert not SalesforceWrite.objects.exists() and not OpportunityChange.objects.exists()


@pytest.mark.parametrize(
    "link",
    [
        "https://gitlab.example/ps/ps-plan/-/issues/12",
        "https://gitlab.example/ps/ps-plan/-/work_items/12/",
        "HTTPS://GITLAB.EXAMPLE/PS/PS-PLAN/-/issues/12",
    ],
)
def test_the_scoping_issue_link_may_be_any_issue_url_of_the_configured_project(em_user, settings, link):
    settings.GITLAB_URL, settings.GITLAB_PROJECT = "https://gitlab.example", "ps/ps-plan"
    write = update_ps_fields(opportunity=OpportunityFactory(), actor=em_user, scoping_issue_link=link)
    assert write.changes == {"scoping_issue_link": link}


@pytest.mark.parametrize(
    "link",
    [
        "https://gitlab.example/ps/other/-/issues/12",
        "https://gitlab.example/ps/ps-plan/-/merge_requests/12",
        "https://evil.example/ps/ps-plan/-/issues/12",
        "https://gitlab.example/ps/ps-plan/-/issues/12?x=<script>",
        "javascript:alert(1)",
    ],
)
def test_a_link_to_anything_but_an_issue_of_the_project_is_refused_with_an_example(em_user, settings, link):
    settings.GITLAB_URL, settings.GITLAB_PROJECT = "https://gitlab.example", "ps/ps-plan"
    with pytest.raises(ValidationError) as error:
        update_ps_fields(opportunity=OpportunityFactory(), actor=em_user, scoping_issue_link=link)
    assert error.value.message_dict["scoping_issue_link"] == [
        "Must be the URL of an issue in the GitLab project, like https://gitlab.example/ps/ps-plan/-/issues/123."
    ]


def test_a_link_salesforce_already_has_does_not_block_another_edit(em_user):
    opportunity = OpportunityFactory(scoping_issue_link="https://elsewhere.example/issues/9")
    assert update_ps_fields(opportunity=opportunity, actor=em_user, em_confidence="Green") is not None
