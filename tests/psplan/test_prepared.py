"""PreparedRows: a values() queryset's SQL written once, its rows the queryset's own for any values."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.db import connection
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabase
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from psplan.prepared import NotPreparable, PreparedRows, _adapter, _as_it_is
from scoping.models import ScopingIssue
from tests.factories import EngagementManagerFactory, ScopingIssueFactory

pytestmark = pytest.mark.django_db


def _issues_of(engagement_manager, since):
    return (
        ScopingIssue.objects.filter(engagement_manager=engagement_manager, created_at__gte=since)
        .order_by("iid")
        .values("iid", "assignee_usernames", "created_at", em_name=F("engagement_manager__name"))
    )


ISSUES_OF = PreparedRows(
    _issues_of,
    engagement_manager=(1, 2),
    since=(timezone.now() - timedelta(days=1), timezone.now() - timedelta(days=2)),
)


def test_the_rows_are_the_querysets_own_whatever_the_values():
    now = timezone.now()
    priya, tom = EngagementManagerFactory(name="Priya"), EngagementManagerFactory(name="Tom")
    ScopingIssueFactory(iid=1, engagement_manager=priya, assignee_usernames=["praman"], created_at=now)
    ScopingIssueFactory(iid=2, engagement_manager=priya, created_at=now - timedelta(days=10))
    ScopingIssueFactory(iid=3, engagement_manager=tom, assignee_usernames=["tbecker", "x"], created_at=now)
    for em, since in [(priya, now - timedelta(days=1)), (priya, now - timedelta(days=30)), (tom, now)]:
        rows = ISSUES_OF(engagement_manager=em.pk, since=since)
        assert rows == list(_issues_of(em.pk, since))
        assert rows  # each case finds something, so that a wrong value would show
    assert ISSUES_OF(engagement_manager=priya.pk, since=now - timedelta(days=1)) == [
        {"iid": 1, "assignee_usernames": ["praman"], "created_at": now, "em_name": "Priya"}
    ]


def test_values_list_rows_are_tuples_in_the_fields_order():
    ScopingIssueFactory(iid=7, title="seven", assignee_usernames=["a"])
    ScopingIssueFactory(iid=8, title="eight", state="closed")
    titles = PreparedRows(  # the state is a parameter of its own, before the iid, kept as it is
        lambda iid: (
            ScopingIssue.objects.filter(state="opened")
            .filter(iid=iid)
            .values_list("assignee_usernames", "title", "iid")
        ),
        iid=(1, 2),
    )
    assert titles(iid=7) == [(["a"], "seven", 7)]
    assert titles(iid=8) == []


def test_the_sql_is_built_on_first_use_only():
    built = []

    def build(iid):
        built.append(iid)
        return ScopingIssue.objects.filter(iid=iid).values("iid")

    rows = PreparedRows(build, iid=(1, 2))
    for iid in (5, 6, 7):
        rows(iid=iid)
    assert built == [1, 2]


def test_dates_go_in_as_the_backend_took_the_examples():
    """SQLite (bin/run) takes dates and times as text: a later date is adapted the same way."""
    sqlite = SQLiteDatabase({**connection.settings_dict, "NAME": ":memory:"}).ops
    adapters = (_as_it_is, sqlite.adapt_datetimefield_value, sqlite.adapt_datefield_value)
    first, second = date(2001, 1, 1), date(2002, 2, 2)
    assert _adapter(adapters, first, second, "2001-01-01", "2002-02-02") == sqlite.adapt_datefield_value
    assert _adapter(adapters, 1, 2, 1, 2) is _as_it_is
    assert _adapter(adapters, first, second, "2001-01-01", "2002-02-03") is None


def test_each_call_is_one_query():
    with CaptureQueriesContext(connection) as queries:
        ISSUES_OF(engagement_manager=1, since=timezone.now())
        ISSUES_OF(engagement_manager=2, since=timezone.now())
    assert len(queries) == 2


def test_none_is_sqls_null_which_equals_nothing():
    ScopingIssueFactory(engagement_manager=None)
    unassigned = PreparedRows(
        lambda em: ScopingIssue.objects.filter(engagement_manager=em).values("iid"), em=(1, 2)
    )
    assert ScopingIssue.objects.filter(engagement_manager=None).exists()
    assert unassigned(em=None) == []


@pytest.mark.parametrize(
    ("build", "examples", "refusal"),
    [
        (
            lambda iids: ScopingIssue.objects.filter(iid__in=iids).values("iid"),
            {"iids": ([1], [1, 2])},
            "changes",
        ),
        (
            lambda em: ScopingIssue.objects.filter(engagement_manager=em).values("iid"),
            {"em": (None, 1)},
            "changes",
        ),
        (lambda iid: ScopingIssue.objects.filter(iid=iid * iid).values("iid"), {"iid": (1, 3)}, "as it is"),
        (lambda iid: ScopingIssue.objects.filter(iid=max(iid, 2)).values("iid"), {"iid": (1, 3)}, "as it is"),
        (
            lambda iid, gitlab_id: ScopingIssue.objects.filter(iid=iid, gitlab_id=gitlab_id).values("iid"),
            {"iid": (1, 2), "gitlab_id": (1, 2)},
            "as it is",
        ),
        (
            lambda upward: ScopingIssue.objects.filter(**{"iid__gte" if upward else "iid__lte": 5}).values(
                "iid"
            ),
            {"upward": (True, False)},
            "changes",
        ),
        (lambda iid: ScopingIssue.objects.values("iid"), {"iid": (1, 2)}, "does not take"),
        (lambda iid: ScopingIssue.objects.filter(iid=iid), {"iid": (1, 2)}, "values()"),
    ],
    ids=[
        "a list of them",
        "None in the SQL",
        "computed from one",
        "floored",
        "two alike",
        "another condition",
        "unused",
        "model instances",
    ],
)
def test_a_queryset_whose_sql_depends_on_the_values_is_refused(build, examples, refusal):
    with pytest.raises(NotPreparable, match=refusal):
        PreparedRows(build, **examples)(**{name: one for name, (one, _) in examples.items()})


def test_the_values_must_be_the_ones_it_was_prepared_with():
    with pytest.raises(TypeError, match="takes"):
        ISSUES_OF(engagement_manager=1)
