from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from opportunities.choices import Segment
from opportunities.models import Account, EngagementManager, Opportunity, Territory, TerritoryAssignment
from psplan.permissions import can_edit, is_admin
from scoping.choices import ProblemKind, Stage
from scoping.models import DataQualityProblem, GitLabWrite, RuleAction, ScopingIssue

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(capsys):
    call_command("seed_demo")
    return capsys.readouterr().out


def test_demo_data_covers_every_stage_segment_and_six_quarters(seeded):
    assert EngagementManager.objects.count() == 8
    assert Account.objects.count() == 60
    assert Opportunity.objects.count() == 200
    assert ScopingIssue.objects.count() == 200
    assert set(ScopingIssue.objects.values_list("stage", flat=True)) == set(Stage.values)
    assert set(Territory.objects.values_list("segment", flat=True)) == set(Segment.values)
    assert TerritoryAssignment.objects.filter(role="primary").count() == Territory.objects.count()
    quarters = set(ScopingIssue.objects.exclude(close_qtr="").values_list("close_qtr", flat=True))
    assert len(quarters) >= 6
    now = timezone.now()
    assert ScopingIssue.objects.going_stale(as_of=now).exists()
    assert ScopingIssue.objects.filter(public_sector=True).exists()


def test_demo_data_includes_label_variants_and_the_problems_they_cause(seeded):
    kinds = set(DataQualityProblem.objects.values_list("kind", flat=True))
    assert {
        ProblemKind.UNKNOWN_SEGMENT,
        ProblemKind.MALFORMED_CLOSE_QTR,
        ProblemKind.TWO_WORKFLOW_LABELS,
    } <= kinds
    variant = ScopingIssue.objects.get(iid=13)
    assert any(
        label.startswith("proposal:") and not label.startswith("proposal::") for label in variant.labels
    )


def test_demo_sign_ins_are_printed_with_their_roles(seeded):
    users = get_user_model().objects
    for username in ("em", "leader", "admin"):
        assert f"  {username} " in seeded
    assert can_edit(users.get(username="em")) and not is_admin(users.get(username="em"))
    assert not can_edit(users.get(username="leader"))
    assert is_admin(users.get(username="admin"))
    assert users.get(username="em").engagement_manager is not None


def test_seeding_twice_duplicates_nothing_and_keeps_passwords(seeded, capsys):
    em_password = get_user_model().objects.get(username="em").password
    counts = [
        model.objects.count() for model in (EngagementManager, Territory, Account, Opportunity, ScopingIssue)
    ]
    call_command("seed_demo")
    assert "passwords unchanged" in capsys.readouterr().out
    assert [
        model.objects.count() for model in (EngagementManager, Territory, Account, Opportunity, ScopingIssue)
    ] == counts
    assert get_user_model().objects.get(username="em").password == em_password


def test_if_empty_leaves_a_database_with_data_alone(seeded, capsys):
    ScopingIssue.objects.filter(iid=1).update(title="Edited by a person")
    call_command("seed_demo", "--if-empty")
    assert "No demo data loaded" in capsys.readouterr().out
    assert ScopingIssue.objects.get(iid=1).title == "Edited by a person"


def test_if_empty_skips_when_an_integration_is_configured(settings, capsys):
    settings.GITLAB_ENABLED = True
    call_command("seed_demo", "--if-empty")
    assert "GitLab or Salesforce is configured" in capsys.readouterr().out
    assert not ScopingIssue.objects.exists()


def test_the_demo_applies_the_closing_rules_so_no_issue_idle_past_the_window_is_left_open(seeded):
    now = timezone.now()
    assert not ScopingIssue.objects.stale(as_of=now).exists()
    closed_by_rule = ScopingIssue.objects.filter(rule_actions__rule=RuleAction.Rule.STALE)
    assert closed_by_rule.exists()
    assert set(closed_by_rule.values_list("state", "stage").distinct()) == {("closed", "Closed_Lost")}
    # Nothing is sent anywhere: the demo has no GitLab to send to.
    assert not GitLabWrite.objects.exists()


def test_seeding_again_closes_the_same_stale_issues_again(seeded):
    closed = set(ScopingIssue.objects.filter(rule_actions__rule="stale").values_list("iid", flat=True))
    call_command("seed_demo")
    assert (
        set(ScopingIssue.objects.filter(rule_actions__rule="stale").values_list("iid", flat=True)) == closed
    )
    assert not ScopingIssue.objects.stale(as_of=timezone.now()).exists()
