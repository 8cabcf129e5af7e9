"""An issue's stale flags read on its own row (the issue page) say what the stale rule's SQL says."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from psplan.fiscal import add_months
from scoping.choices import IssueState
from scoping.models import ScopingIssue
from tests.factories import ScopingIssueFactory

pytestmark = pytest.mark.django_db
SC = "Services Calculator"
MOMENTS = [
    datetime(2024, 2, 29, 12, 0, tzinfo=UTC),  # a month end in a leap year: Dec 29-31 all map to Feb 29
    datetime(2024, 3, 1, 0, 0, tzinfo=UTC),
    datetime(2024, 9, 30, 23, 0, tzinfo=UTC),  # Jul 31 has no Sep 31
    datetime(2024, 10, 1, 0, 0, tzinfo=UTC),
    datetime(2024, 6, 15, 10, 30, tzinfo=UTC),
]


def quiet_issue(last_activity: datetime, **fields) -> ScopingIssue:
    fields.setdefault("labels", [SC, "proposal::Estimate_Feedback"])
    return ScopingIssueFactory(updated_at=last_activity, last_activity_at=last_activity, **fields)


def issues_around_the_cut_offs(moment: datetime) -> list[ScopingIssue]:
    """Last activity a second, an hour and days either side of the moment's two cut-offs (stale now, stale
    at the end of the warning window), without an override and with one ending on each day that matters."""
    window_end = moment + timedelta(days=14)
    lasts = [
        add_months(cut_off, -2) + timedelta(seconds=offset)
        for cut_off in (moment, window_end)
        for offset in (-3 * 86_400, -3600, -1, 0, 1, 3600, 3 * 86_400)
    ]
    overrides = [
        None,
        *(day + timedelta(days=d) for day in (moment.date(), window_end.date()) for d in (-1, 0)),
    ]
    issues = [quiet_issue(last, keep_open_until=until) for last in lasts for until in overrides]
    issues.append(quiet_issue(add_months(moment, -3), state=IssueState.CLOSED, labels=[SC]))
    issues.append(quiet_issue(add_months(moment, -3), removed_at=moment - timedelta(days=1)))
    return issues


@pytest.mark.parametrize("moment", MOMENTS, ids=lambda moment: moment.isoformat())
def test_the_flags_of_one_issue_agree_with_the_rules_queries_at_every_cut_off(moment):
    issues = issues_around_the_cut_offs(moment)
    stale = set(ScopingIssue.objects.stale(as_of=moment).values_list("pk", flat=True))
    going_stale = set(ScopingIssue.objects.going_stale(as_of=moment).values_list("pk", flat=True))
    assert stale and going_stale and len(stale | going_stale) < len(issues)  # both sides of each cut-off

    for issue in issues:
        facts = (issue.last_activity_at, issue.keep_open_until)
        assert issue.is_stale(as_of=moment) == (issue.pk in stale), facts
        assert issue.is_going_stale(as_of=moment) == (issue.pk in going_stale), facts


def test_an_issue_quiet_since_december_31st_is_stale_only_once_february_is_over():
    issue = quiet_issue(datetime(2023, 12, 31, 10, 0, tzinfo=UTC))

    assert not issue.is_stale(as_of=datetime(2024, 2, 29, 23, 59, tzinfo=UTC))
    assert issue.is_going_stale(as_of=datetime(2024, 2, 29, 23, 59, tzinfo=UTC))
    assert issue.is_stale(as_of=datetime(2024, 3, 1, 0, 0, tzinfo=UTC))
    assert not issue.is_going_stale(as_of=datetime(2024, 3, 1, 0, 0, tzinfo=UTC))


def test_an_override_until_the_end_of_the_warning_window_keeps_the_warning_away():
    moment = datetime(2024, 6, 15, 10, 30, tzinfo=UTC)
    soon = quiet_issue(datetime(2024, 4, 20, tzinfo=UTC))
    kept = quiet_issue(datetime(2024, 4, 20, tzinfo=UTC), keep_open_until=date(2024, 6, 29))
    kept_too_briefly = quiet_issue(datetime(2024, 4, 20, tzinfo=UTC), keep_open_until=date(2024, 6, 28))

    assert [issue.is_going_stale(as_of=moment) for issue in (soon, kept, kept_too_briefly)] == [
        True,
        False,
        True,
    ]
    assert not any(issue.is_stale(as_of=moment) for issue in (soon, kept, kept_too_briefly))


def test_closed_and_removed_issues_are_never_flagged():
    closed = quiet_issue(datetime(2023, 1, 1, tzinfo=UTC), state=IssueState.CLOSED, labels=[SC])
    removed = quiet_issue(datetime(2023, 1, 1, tzinfo=UTC), removed_at=datetime(2024, 1, 1, tzinfo=UTC))
    moment = datetime(2024, 6, 15, tzinfo=UTC)

    assert not any(
        issue.is_stale(as_of=moment) or issue.is_going_stale(as_of=moment) for issue in (closed, removed)
    )
