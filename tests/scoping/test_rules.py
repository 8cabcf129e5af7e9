"""The opportunity rules: closed won/lost → outcome label, close_qtr of CloseDate, closed — once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime

import pytest
import time_machine
from django.db.models.signals import post_save

from opportunities.choices import SyncKind, SyncStatus
from opportunities.models import Opportunity, SyncRun
from scoping.choices import IssueState, Stage
from scoping.models import GitLabWrite, RuleAction, ScopingIssue
from scoping.rules import _outcome_fired, apply_rules
from tests.factories import OpportunityFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db
SC = "Services Calculator"
NOW = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen_clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def decided_issue(*, won: bool, close_date: date = date(2025, 3, 3), **fields) -> ScopingIssue:
    opportunity = OpportunityFactory(
        stage_name="Closed Won" if won else "Closed Lost", is_closed=True, is_won=won, close_date=close_date
    )
    fields.setdefault("labels", [SC, "proposal::SOW_WIP", "Segment::SMB"])
    return ScopingIssueFactory(opportunity=opportunity, **fields)


QUARTERS = [
    (date(2024, 1, 31), "Q424"),  # January is the last month of FY2024
    (date(2024, 2, 1), "Q125"),
    (date(2024, 4, 30), "Q125"),
    (date(2024, 5, 1), "Q225"),
    (date(2024, 7, 31), "Q225"),
    (date(2024, 8, 1), "Q325"),
    (date(2024, 10, 31), "Q325"),
    (date(2024, 11, 1), "Q425"),
    (date(2025, 1, 31), "Q425"),
]


@pytest.mark.parametrize(("won", "stage"), [(True, Stage.CLOSED_WON), (False, Stage.CLOSED_LOST)])
@pytest.mark.parametrize(("close_date", "quarter"), QUARTERS)
def test_a_closed_opportunity_labels_and_closes_its_issue_in_the_quarter_of_its_close_date(
    won, stage, close_date, quarter
):
    issue = decided_issue(won=won, close_date=close_date)

    result = apply_rules()

    write = GitLabWrite.objects.get()
    assert write.intent == {"stage": stage.value, "close_qtr": quarter, "state": "closed"}
    assert ("closed won" if won else "closed lost") in write.note
    issue.refresh_from_db()
    assert (issue.stage, issue.close_qtr, issue.state) == (stage, quarter, IssueState.CLOSED)
    assert "Segment::SMB" in issue.labels and "proposal::SOW_WIP" not in issue.labels
    action = RuleAction.objects.get()
    assert (action.rule, action.close_qtr) == ("opportunity_won" if won else "opportunity_lost", quarter)
    assert (write.rule_action, write.source, write.created_by) == (action, "rule", None)
    assert [change.iid for change in result.changes] == [issue.iid]


def test_rerunning_the_rules_on_unchanged_data_writes_nothing():
    decided_issue(won=True)
    apply_rules()

    again = apply_rules()

    assert again.changes == [] and again.already_done == []
    assert GitLabWrite.objects.count() == 1 and RuleAction.objects.count() == 1


@pytest.mark.parametrize(
    "labels",
    [
        [SC, "proposal:Closed_Won", "close_qtr:Q225"],
        [SC, "proposal::closed_won", "close_qtr::Q225"],
        [SC, "Proposal::Closed Won", "close_qtr::q225"],
    ],
)
def test_an_outcome_already_there_in_any_spelling_counts_as_done_and_keeps_its_close_qtr(labels):
    issue = decided_issue(won=True, labels=labels, state=IssueState.CLOSED)

    result = apply_rules()

    assert not GitLabWrite.objects.exists()
    assert [change.iid for change in result.already_done] == [issue.iid]
    assert RuleAction.objects.filter(issue=issue).exists()
    issue.refresh_from_db()
    assert issue.labels == labels


def test_an_open_issue_already_marked_won_is_only_given_its_close_qtr_and_closed():
    decided_issue(won=True, close_date=date(2024, 9, 1), labels=[SC, "proposal:Closed_Won"])

    apply_rules()

    write = GitLabWrite.objects.get()
    assert write.intent == {"close_qtr": "Q325", "state": "closed"}


def test_an_issue_in_the_closed_column_gets_the_outcome_without_being_closed_again():
    decided_issue(won=False, close_date=date(2024, 12, 5), labels=[SC], state=IssueState.CLOSED)

    result = apply_rules()

    write = GitLabWrite.objects.get()
    assert write.intent == {"stage": "Closed_Lost", "close_qtr": "Q425"}
    assert "closed lost on 2024-12-05" in write.note
    assert (result.counts["closed"], result.counts["comments"]) == (0, 1)


def test_two_workflow_labels_are_replaced_by_the_one_outcome():
    decided_issue(won=True, labels=[SC, "proposal:Closed_Won", "proposal::SOW_WIP"])

    apply_rules()

    write = GitLabWrite.objects.get()
    assert write.intent["stage"] == "Closed_Won"
    issue = write.issue
    assert [label for label in issue.labels if "roposal" in label] == ["proposal::Closed_Won"]


def test_an_ems_own_labels_are_not_overwritten_by_the_rule_firing_again_for_the_same_reason():
    issue = decided_issue(won=True)
    apply_rules()
    # The EM disagrees: reopens the issue and moves it back to SOW_WIP (the GitLab sync mirrors it).
    ScopingIssue.objects.filter(pk=issue.pk).update(
        labels=[SC, "proposal::SOW_WIP"], state=IssueState.OPENED, stage=Stage.SOW_WIP, last_activity_at=NOW
    )

    result = apply_rules()

    assert result.changes == [] and GitLabWrite.objects.count() == 1


def test_an_open_opportunity_changes_nothing():
    ScopingIssueFactory(opportunity=OpportunityFactory(), labels=[SC, "proposal::SOW_WIP"])

    assert apply_rules().changes == []
    assert not GitLabWrite.objects.exists()


def test_a_run_is_recorded_with_its_counts(settings):
    decided_issue(won=True)
    decided_issue(won=False)

    result = apply_rules()

    run = SyncRun.objects.get()
    assert result.run == run
    assert (run.kind, run.status) == (SyncKind.RULES, SyncStatus.SUCCEEDED)
    assert run.counts == {
        "won": 1,
        "lost": 1,
        "stale": 0,
        "closed": 2,
        "comments": 2,
        "already_done": 0,
        "held_back_by_cap": 0,
        "cap": settings.PSPLAN_MAX_AUTO_CLOSES_PER_RUN,
        "cap_hit": False,
        "going_stale": 0,
    }


def test_a_dry_run_lists_the_changes_and_writes_nothing_at_all():
    issue = decided_issue(won=True, close_date=date(2024, 1, 31), labels=[SC, "proposal::SOW_WIP", "Open"])

    result = apply_rules(dry_run=True)

    (change,) = result.changes
    assert (change.iid, change.rule, change.close, change.close_qtr) == (
        issue.iid,
        "opportunity_won",
        True,
        "Q424",
    )
    assert set(change.add_labels) == {"proposal::Closed_Won", "close_qtr::Q424"}
    assert set(change.remove_labels) == {"proposal::SOW_WIP", "Open"}
    assert result.run is None
    assert (
        not GitLabWrite.objects.exists() and not RuleAction.objects.exists() and not SyncRun.objects.exists()
    )
    issue.refresh_from_db()
    assert issue.state == IssueState.OPENED


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_run_says_which_moment_it_judged_and_whether_it_was_a_dry_run(dry_run):
    moment = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)

    result = apply_rules(as_of=moment, dry_run=dry_run)

    assert (result.as_of, result.dry_run) == (moment, dry_run)


def test_one_run_changes_no_more_issues_than_the_cap_and_says_so(settings):
    settings.PSPLAN_MAX_AUTO_CLOSES_PER_RUN = 3
    issues = [decided_issue(won=True) for _ in range(5)]

    first = apply_rules()

    assert [change.iid for change in first.changes] == [issue.iid for issue in issues[:3]]
    assert first.cap_hit and len(first.held_back) == 2
    assert first.run.counts["cap_hit"] is True and first.run.counts["held_back_by_cap"] == 2
    assert GitLabWrite.objects.count() == 3
    second = apply_rules()
    assert len(second.changes) == 2 and not second.cap_hit


def test_a_limit_overrides_the_cap_for_one_run():
    decided_issue(won=True)
    decided_issue(won=True)

    result = apply_rules(limit=1)

    assert (len(result.changes), len(result.held_back)) == (1, 1)


def test_a_removed_issue_is_left_alone():
    decided_issue(won=True, removed_at=NOW)

    assert apply_rules().changes == []


def test_the_comment_names_the_opportunity_its_outcome_and_the_day_it_closed(settings):
    settings.SALESFORCE_INSTANCE_URL = "https://acme.my.salesforce.com"
    issue = decided_issue(won=True)
    opportunity = issue.opportunity

    apply_rules()

    assert GitLabWrite.objects.get().note == (
        "PS Plan marked this issue proposal::Closed_Won: its Salesforce opportunity "
        f"[{opportunity.name}](https://acme.my.salesforce.com/lightning/r/Opportunity/"
        f"{opportunity.salesforce_id}/view) closed won on 2025-03-03."
    )
    assert RuleAction.objects.get().reason == f"{opportunity.salesforce_id}:2025-03-03"


def test_a_close_qtr_set_before_the_outcome_gives_way_to_the_quarter_of_the_close_date():
    decided_issue(won=True, labels=[SC, "proposal::SOW_WIP", "close_qtr::Q124"])

    apply_rules()

    assert GitLabWrite.objects.get().intent == {"stage": "Closed_Won", "close_qtr": "Q126", "state": "closed"}


def test_an_outcome_with_an_unrelated_label_problem_still_counts_as_done():
    labels = [SC, "proposal::Closed_Won", "close_qtr::Q225", "Segment::Ent_LATAM"]
    issue = decided_issue(won=True, labels=labels, state=IssueState.CLOSED)

    result = apply_rules()

    assert not GitLabWrite.objects.exists()
    assert [change.iid for change in result.already_done] == [issue.iid]


def test_a_closed_opportunity_without_a_close_date_gets_its_outcome_but_no_close_qtr():
    issue = decided_issue(won=False, close_date=None)

    apply_rules()

    assert GitLabWrite.objects.get().intent == {"stage": "Closed_Lost", "state": "closed"}
    assert RuleAction.objects.get().reason == f"{issue.opportunity.salesforce_id}:"


@pytest.mark.parametrize("limit", [0, -3])
def test_a_limit_of_zero_or_less_changes_nothing_and_holds_every_firing_back(limit):
    decided_issue(won=True)

    result = apply_rules(limit=limit)

    assert (result.changes, len(result.held_back), result.cap) == ([], 1, 0)
    assert not GitLabWrite.objects.exists() and not RuleAction.objects.exists()


def test_a_run_stopped_by_the_cap_says_so_in_the_log(settings, caplog):
    settings.PSPLAN_MAX_AUTO_CLOSES_PER_RUN = 1
    decided_issue(won=True)
    decided_issue(won=False)

    with caplog.at_level(logging.WARNING, logger="scoping.rules"):
        apply_rules()

    assert "Closing rules stopped at the cap of 1; 1 wait" in caplog.messages


def test_without_write_back_the_rules_change_the_issue_here_and_queue_nothing_for_gitlab():
    issue = decided_issue(won=True)

    (change,) = apply_rules(write_back=False).changes

    assert change.iid == issue.iid
    issue.refresh_from_db()
    assert (issue.stage, issue.state, issue.close_qtr) == (Stage.CLOSED_WON, IssueState.CLOSED, "Q126")
    assert RuleAction.objects.filter(issue=issue).exists()
    assert not GitLabWrite.objects.exists()


# --- Someone acts while a run is under way: each firing is planned again on the locked row ----------


@contextmanager
def meanwhile(act: Callable[[], object]) -> Iterator[None]:
    """Does `act` as the run starts applying what it planned, as another person or process would."""

    def on_run_recorded(sender, instance, created, **kwargs):
        if created and instance.kind == SyncKind.RULES:
            act()

    post_save.connect(on_run_recorded, sender=SyncRun, weak=False)
    try:
        yield
    finally:
        post_save.disconnect(on_run_recorded, sender=SyncRun)


def test_an_opportunity_reopened_while_the_rules_run_leaves_its_issue_alone():
    issue = decided_issue(won=True)

    with meanwhile(lambda: Opportunity.objects.update(is_closed=False, is_won=False)):
        result = apply_rules()

    assert result.changes == [] and result.run.counts["won"] == 0
    assert not GitLabWrite.objects.exists() and not RuleAction.objects.exists()
    issue.refresh_from_db()
    assert issue.state == IssueState.OPENED


def test_an_opportunity_closed_again_on_another_day_while_the_rules_run_fires_on_the_next_run():
    issue = decided_issue(won=True)
    new_day = date(2025, 2, 14)

    with meanwhile(lambda: Opportunity.objects.update(close_date=new_day)):
        assert apply_rules().changes == []

    (change,) = apply_rules().changes
    assert change.reason == f"{issue.opportunity.salesforce_id}:2025-02-14"
    assert GitLabWrite.objects.get().intent["close_qtr"] == "Q126"


def test_an_opportunity_that_turned_from_won_to_lost_while_the_rules_run_fires_on_the_next_run():
    decided_issue(won=True)

    with meanwhile(lambda: Opportunity.objects.update(is_won=False)):
        assert apply_rules().changes == []

    (change,) = apply_rules().changes
    assert change.rule == "opportunity_lost"


def test_an_issue_deleted_while_the_rules_run_is_skipped():
    issue = decided_issue(won=True)

    with meanwhile(lambda: ScopingIssue.objects.filter(pk=issue.pk).delete()):
        result = apply_rules()

    assert result.changes == [] and not RuleAction.objects.exists()


def test_a_firing_another_run_recorded_meanwhile_is_neither_recorded_nor_written_twice():
    issue = decided_issue(won=True)
    reason = f"{issue.opportunity.salesforce_id}:2025-03-03"

    with meanwhile(lambda: RuleAction.objects.create(issue=issue, rule="opportunity_won", reason=reason)):
        result = apply_rules()

    assert result.changes == [] and result.run.counts["won"] == 0
    assert RuleAction.objects.count() == 1 and not GitLabWrite.objects.exists()


def test_a_run_skips_in_the_database_the_outcomes_that_fired_for_this_close_and_no_other():
    """Years of decided deals are not planned again each run: only those whose firing stands for their
    current close; a re-closed deal, a firing of the other outcome or one GitLab refused long ago come back."""
    fired = decided_issue(won=True)
    lost = decided_issue(won=False)
    reclosed = decided_issue(won=True)
    other_outcome = decided_issue(won=False)
    refused = decided_issue(won=True)
    apply_rules()
    Opportunity.objects.filter(pk=reclosed.opportunity_id).update(close_date=date(2025, 3, 7))
    Opportunity.objects.filter(pk=other_outcome.opportunity_id).update(is_won=True)
    GitLabWrite.objects.filter(issue=refused).update(
        status="failed", created_at=datetime(2025, 3, 10, 7, 0, tzinfo=UTC)
    )

    skipped = ScopingIssue.objects.filter(_outcome_fired(NOW))

    assert set(skipped) == {fired, lost}
