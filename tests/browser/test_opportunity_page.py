from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from opportunities.models import Opportunity
from psplan.permissions import ENGAGEMENT_MANAGERS_GROUP
from tests.factories import OpportunityFactory, UserFactory

pytestmark = [pytest.mark.browser]
OPP = "006000000000888AAA"


def test_an_em_edits_confidence_inline_and_sees_the_rule_for_red(signed_in_page, live_server):
    user = UserFactory(username="em")
    user.groups.add(Group.objects.get_or_create(name=ENGAGEMENT_MANAGERS_GROUP)[0])
    OpportunityFactory(salesforce_id=OPP, name="Initech - Migration")
    page = signed_in_page("em")
    page.goto(f"{live_server.url}/opportunities/")
    row = page.locator(f"#opportunity-{OPP}")
    row.get_by_role("button", name="Edit").click()
    row.get_by_label("EM confidence").select_option("Red")
    row.get_by_role("button", name="Save").click()
    assert row.get_by_role("alert").inner_text().strip() == "Red confidence needs a rationale."
    row.get_by_label("Rationale").fill("Budget frozen until Q2")
    row.get_by_role("button", name="Save").click()
    row.get_by_text("sending…").wait_for()
    assert row.get_by_text("Budget frozen until Q2").is_visible()
    assert Opportunity.objects.get().em_confidence == "Red"
