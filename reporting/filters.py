"""The report pages' filters: the same filter types as the lists they drill down to."""

from __future__ import annotations

from opportunities.filters import OpportunityFilter
from opportunities.models import Opportunity
from scoping.filters import WinRateFilter
from scoping.models import ScopingIssue


class WinRateWindowFilter(WinRateFilter):
    """The win-rate page shows a window of quarters, so a single close quarter is not a filter there."""

    close_qtr = None

    class Meta:
        model = ScopingIssue
        fields = ["engagement_manager", "segment"]


class DealFilter(OpportunityFilter):
    """Slipped deals and calibration look at one EM's deals or everyone's."""

    em_confidence = None
    close_quarter = None
    is_closed = None
    is_won = None

    class Meta:
        model = Opportunity
        fields = ["engagement_manager"]
