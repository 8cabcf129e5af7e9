"""The inactivity rule: no activity for two months → Closed_Lost, close_qtr of the day it went stale."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from scoping.choices import IssueState, Stage
from scoping.models import GitLabWrite, RuleAction, ScopingIssue
from scoping.rules import apply_rules
from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory
from tests.scoping.test_rules import meanwhile

pytestmark = pytest.mark.django_db
SC = "Services Calculator"
NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)  # Q2 of FY2025


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def quiet_issue(last_activity: datetime, **fields) -> ScopingIssue:
    fields.setdefault("labels", [SC, "proposal::Estimate_Feedback", "EM_Status::Waiting"])
    return ScopingIssueFactory(updated_at=last_activity, last_activity_at=last_activity, **fields)


def test_an_issue_quiet_for_two_months_is_closed_lost_with_a_comment_saying_why_and_how_to_undo():
    issue = quiet_issue(datetime(2024, 4, 10, 8, 0, tzinfo=UTC))

    result = apply_rules()

    write = GitLabWrite.objects.get()
    assert write.intent == {"stage": "Closed_Lost", "close_qtr": "Q225", "state": "closed"}
    assert "no activity since 2024-04-10" in write.note and "2 months" in write.note
    assert "Reopen this issue" in write.note and "keep open until" in write.note
    issue.refresh_from_db()
    assert (issue.stage, issue.state, issue.close_qtr) == (Stage.CLOSED_LOST, IssueState.CLOSED, "Q225")
    assert issue.last_activity_at == datetime(2024, 4, 10, 8, 0, tzinfo=UTC)  # our write is not activity
    assert RuleAction.objects.get().reason == "2024-06-10"
    assert result.counts["stale"] == 1


def test_the_close_qtr_is_that_of_the_day_it_went_stale_not_of_today():
    quiet_issue(datetime(2024, 2, 20, tzinfo=UTC))  # stale on 2024-04-20, the last month of Q1

    apply_rules()

    assert GitLabWrite.objects.get().intent["close_qtr"] == "Q125"


def test_calendar_months_count_so_december_31st_goes_stale_at_the_end_of_february():
    with time_machine.travel(datetime(2024, 3, 1, tzinfo=UTC), tick=False):
        quiet_issue(datetime(2023, 12, 31, 10, 0, tzinfo=UTC))
        apply_rules()

    assert RuleAction.objects.get().reason == "2024-02-29"
    assert GitLabWrite.objects.get().intent["close_qtr"] == "Q125"  # February opens FY2025


def test_an_issue_with_recent_activity_stays_open():
    quiet_issue(datetime(2024, 4, 16, tzinfo=UTC))

    assert apply_rules().changes == []
    assert not GitLabWrite.objects.exists()


def test_an_issue_within_14_days_of_going_stale_is_flagged_for_its_em():
    em = EngagementManagerFactory(gitlab_username="praman")
    issue = quiet_issue(datetime(2024, 4, 20, tzinfo=UTC), engagement_manager=em)
    quiet_issue(datetime(2024, 5, 20, tzinfo=UTC))  # five weeks to go: not yet

    result = apply_rules(dry_run=True)

    (flag,) = result.going_stale
    assert (flag.iid, flag.engagement_manager, flag.goes_stale_at) == (
        issue.iid,
        "praman",
        datetime(2024, 6, 20, tzinfo=UTC),
    )
    assert result.counts["going_stale"] == 1


def test_a_live_keep_open_override_keeps_a_quiet_issue_open():
    quiet_issue(datetime(2024, 1, 5, tzinfo=UTC), keep_open_until=date(2024, 6, 15))

    assert apply_rules().changes == []


def test_after_the_override_expires_the_issue_goes_stale_on_the_day_after_it_ended():
    quiet_issue(datetime(2024, 1, 5, tzinfo=UTC), keep_open_until=date(2024, 5, 31))

    apply_rules()

    assert GitLabWrite.objects.get().intent["close_qtr"] == "Q225"  # June, not March (Q1)
    assert RuleAction.objects.get().reason == "2024-06-01"


def test_an_override_that_ended_before_the_issue_went_stale_changes_nothing_about_the_date():
    quiet_issue(datetime(2024, 2, 20, tzinfo=UTC), keep_open_until=date(2024, 3, 1))

    apply_rules()

    assert RuleAction.objects.get().reason == "2024-04-20"


def test_an_em_who_reopens_an_auto_closed_issue_restarts_the_clock(frozen_clock):
    issue = quiet_issue(datetime(2024, 4, 10, tzinfo=UTC))
    apply_rules()
    reopened = datetime(2024, 6, 20, 9, 0, tzinfo=UTC)
    frozen_clock.move_to(reopened)
    # The GitLab sync mirrors the EM's reopen: a human change, so it is activity.
    ScopingIssue.objects.filter(pk=issue.pk).update(
        state=IssueState.OPENED, updated_at=reopened, last_activity_at=reopened
    )

    frozen_clock.move_to(datetime(2024, 8, 19, 12, 0, tzinfo=UTC))
    assert apply_rules().changes == []

    frozen_clock.move_to(datetime(2024, 8, 21, 12, 0, tzinfo=UTC))
    (change,) = apply_rules().changes
    assert (change.rule, change.reason, change.close) == ("stale", "2024-08-20", True)
    # The labels still said Closed_Lost with a close_qtr: only the state needed changing.
    assert (change.add_labels, change.remove_labels) == ((), ())
    assert RuleAction.objects.filter(issue=issue).count() == 2
    closing_again = GitLabWrite.objects.latest("pk")
    assert closing_again.intent == {"state": "closed"}
    assert "no activity since 2024-06-20" in closing_again.note


def test_rerunning_the_stale_rule_writes_nothing_even_before_gitlab_has_the_close():
    issue = quiet_issue(datetime(2024, 4, 10, tzinfo=UTC))
    apply_rules()
    # Until the outbox delivers, a GitLab sync may still show the issue open with old labels.
    ScopingIssue.objects.filter(pk=issue.pk).update(
        state=IssueState.OPENED, labels=[SC, "proposal::Estimate_Feedback"], stage=Stage.ESTIMATE_FEEDBACK
    )

    assert apply_rules().changes == []
    assert GitLabWrite.objects.count() == 1


def test_a_quiet_issue_whose_opportunity_closed_follows_the_opportunity_not_the_clock():
    opportunity = OpportunityFactory(is_closed=True, is_won=True, close_date=date(2024, 6, 1))
    quiet_issue(datetime(2024, 1, 1, tzinfo=UTC), opportunity=opportunity)

    (change,) = apply_rules().changes

    assert change.rule == "opportunity_won"
    assert "proposal::Closed_Won" in change.add_labels


def test_the_cap_closes_the_longest_quiet_issues_first(settings):
    settings.PSPLAN_MAX_AUTO_CLOSES_PER_RUN = 2
    issues = [quiet_issue(datetime(2024, 4, 1, tzinfo=UTC) - timedelta(days=n)) for n in range(5)]

    result = apply_rules()

    assert [change.iid for change in result.changes] == [issues[4].iid, issues[3].iid]
    assert result.cap_hit and result.run.counts["held_back_by_cap"] == 3


def test_a_broken_clock_far_in_the_future_closes_no_more_than_the_cap(settings):
    settings.PSPLAN_MAX_AUTO_CLOSES_PER_RUN = 10
    for _ in range(30):
        quiet_issue(NOW - timedelta(days=1))

    result = apply_rules(as_of=NOW + timedelta(days=3650))

    assert result.counts["closed"] == 10 and result.counts["held_back_by_cap"] == 20
    assert ScopingIssue.objects.filter(state=IssueState.CLOSED).count() == 10


def test_a_dry_run_lists_stale_closes_and_writes_nothing():
    issue = quiet_issue(datetime(2024, 4, 10, tzinfo=UTC))

    (change,) = apply_rules(dry_run=True).changes

    assert (change.iid, change.rule, change.close_qtr, change.close) == (issue.iid, "stale", "Q225", True)
    assert "no activity since" in change.comment
    assert not GitLabWrite.objects.exists() and not RuleAction.objects.exists()


def refused_by_gitlab(issue: ScopingIssue) -> None:
    """What the GitLab delivery does with a refused write: FAILED, and the row back to GitLab's state."""
    GitLabWrite.objects.filter(issue=issue).update(status="failed", last_error="Label does not exist")
    ScopingIssue.objects.filter(pk=issue.pk).update(
        state=IssueState.OPENED, labels=[SC, "proposal::Estimate_Feedback"], stage=Stage.ESTIMATE_FEEDBACK
    )


def test_a_firing_gitlab_refused_is_tried_again_after_an_hour_not_on_every_run(frozen_clock):
    issue = quiet_issue(datetime(2024, 4, 10, tzinfo=UTC))
    apply_rules()
    refused_by_gitlab(issue)

    frozen_clock.shift(timedelta(minutes=30))
    assert apply_rules().changes == []

    frozen_clock.shift(timedelta(minutes=31))
    (change,) = apply_rules().changes
    assert (change.rule, change.reason, change.close) == ("stale", "2024-06-10", True)
    assert GitLabWrite.objects.filter(status="pending").count() == 1
    assert RuleAction.objects.filter(issue=issue).count() == 1
    assert apply_rules().changes == []  # the new write is pending, not refused


def test_the_comment_says_why_the_issue_was_closed_and_how_to_undo_it():
    quiet_issue(datetime(2024, 4, 10, 8, 0, tzinfo=UTC))

    apply_rules()

    assert GitLabWrite.objects.get().note == (
        "PS Plan closed this issue as proposal::Closed_Lost (close_qtr::Q225): it has had no activity since "
        "2024-04-10, and the team counts a scoping issue with no activity for 2 months as lost.\n\n"
        "Still active? Reopen this issue: your reopen counts as activity and restarts the clock. "
        "To keep a quiet issue open, set “keep open until” on it in PS Plan."
    )


def test_a_quiet_issue_whose_opportunity_is_still_open_is_closed_by_the_clock():
    issue = quiet_issue(datetime(2024, 4, 10, tzinfo=UTC), opportunity=OpportunityFactory())

    (change,) = apply_rules().changes

    assert (change.iid, change.rule) == (issue.iid, "stale")


def test_issues_going_stale_are_flagged_quietest_first_with_or_without_an_em():
    em = EngagementManagerFactory(gitlab_username="praman")
    later = quiet_issue(datetime(2024, 4, 25, tzinfo=UTC), engagement_manager=em)
    sooner = quiet_issue(datetime(2024, 4, 20, tzinfo=UTC))
    decided = OpportunityFactory(is_closed=True, is_won=True, close_date=date(2024, 6, 1))
    quiet_issue(
        datetime(2024, 4, 22, tzinfo=UTC), opportunity=decided
    )  # its opportunity decides, not the clock

    flags = apply_rules(dry_run=True).going_stale

    assert [(flag.iid, flag.engagement_manager) for flag in flags] == [
        (sooner.iid, ""),
        (later.iid, "praman"),
    ]


def test_an_issue_with_activity_while_the_rules_run_is_left_open():
    issue = quiet_issue(datetime(2024, 4, 10, tzinfo=UTC))

    with meanwhile(lambda: ScopingIssue.objects.filter(pk=issue.pk).update(last_activity_at=NOW)):
        result = apply_rules()

    assert result.changes == [] and result.run.counts["stale"] == 0
    assert not GitLabWrite.objects.exists() and not RuleAction.objects.exists()
