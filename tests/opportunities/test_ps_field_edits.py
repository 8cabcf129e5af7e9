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
    em = EngagementManagerFactory(salesforce_user_id="005000000000042AAA")
    write = update_ps_fields(opportunity=OpportunityFactory(), actor=em_user, engagement_manager=em)
    assert write.changes == {"engagement_manager": "005000000000042AAA"}


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
