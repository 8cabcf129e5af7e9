"""The issue-list filters that report figures drill down with (the API takes them too: tests/api)."""

from __future__ import annotations

import pytest

from tests.reporting import datasets

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("query", "count"),
    [
        ("stage_in=Closed_Won,Closed_Lost&close_qtr=Q227", 7),
        ("stage_in=Closed_Won", 7),
        ("close_qtr_in=q227,Q326&stage=Closed_Won", 4),
        ("has_engagement_manager=false&stage_in=Closed_Won,Closed_Lost", 2),
        ("has_engagement_manager=true&close_qtr=Q227", 7),
        ("has_segment=false&stage_in=Closed_Won,Closed_Lost", 1),
        ("has_segment=true&close_qtr=Q326", 1),
    ],
)
def test_the_drill_down_filters_select_exactly_those_issues(reader_client, query, count):
    datasets.win_rate()
    assert reader_client.get(f"/issues/?{query}").context["page"].paginator.count == count


def test_the_issue_list_keeps_a_reports_filters_when_another_filter_changes(reader_client):
    datasets.win_rate()
    page = reader_client.get(
        "/issues/?stage_in=Closed_Won,Closed_Lost&has_engagement_manager=false"
    ).content.decode()
    assert '<input type="hidden" name="stage_in" value="Closed_Won,Closed_Lost">' in page
    assert '<input type="hidden" name="has_engagement_manager" value="false">' in page
    assert "no engagement manager" in page
