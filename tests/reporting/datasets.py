"""Datasets for the report tests and screenshots, with their figures worked out by hand in the docstrings.

All are anchored on NOW, 20 December 2026: Q4 of FY2027 (Nov 2026 - Jan 2027, the year starting in
February). Each function builds its rows and returns the records the tests refer to.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from opportunities.models import OpportunityChange
from psplan.audit import ChangeSource
from scoping.choices import IssueState
from scoping.models import RuleAction
from scoping.services import refresh_issues
from tests.factories import (
    EngagementManagerFactory,
    OpportunityFactory,
    ScopingIssueFactory,
    UserFactory,
)

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)
SC = "Services Calculator"


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


def people() -> dict[str, Any]:
    return {
        "priya": EngagementManagerFactory(name="Priya Raman", gitlab_username="praman"),
        "tom": EngagementManagerFactory(name="Tom Becker", gitlab_username="tbecker"),
        "nadia": EngagementManagerFactory(name="Nadia Unlinked", gitlab_username="", gitlab_user_id=None),
    }


def decided(stage: str, quarter: str, *, em=None, segment: str = "", **fields):
    labels = [SC, f"proposal::{stage}", f"close_qtr::{quarter}"] + (
        [f"Segment::{segment}"] if segment else []
    )
    return ScopingIssueFactory(state=IssueState.CLOSED, labels=labels, engagement_manager=em, **fields)


def win_rate() -> dict[str, Any]:
    """Window Q425-Q427 (the current quarter and the 8 before it).

    Q227: Priya won 2 and lost 1 (SMB); Tom lost 2 (MM_EMEA); no EM won 1 (no segment), lost 1 (SMB).
    Q326: Nadia (not linked to GitLab) won 1 (SMB). Q427: Priya won 1 (Ent_EAST).
    Outside the window or not decided: Priya won in Q325 and in Q128; an open SOW_WIP issue and an
    issue closed without an outcome, both labelled Q227.

    Overall: Q227 3 won, 4 lost (43 %); Q326 1-0 (100 %); Q427 1-0 (100 %); the other six quarters
    have no win rate. Window: 5 won, 4 lost (56 %).
    By EM: Nadia Q326 1-0; Priya Q227 2-1 (67 %), Q427 1-0, window 3-1 (75 %); Tom Q227 0-2 (0 %);
    no EM Q227 1-1 (50 %).
    By segment: Ent_EAST Q427 1-0; MM_EMEA Q227 0-2; SMB Q227 2-2 (50 %), Q326 1-0, window 3-2 (60 %);
    no segment Q227 1-0.
    """
    team = people()
    priya, tom, nadia = team["priya"], team["tom"], team["nadia"]
    decided("Closed_Won", "Q227", em=priya, segment="SMB")
    decided("Closed_Won", "Q227", em=priya, segment="SMB")
    decided("Closed_Lost", "Q227", em=priya, segment="SMB")
    decided("Closed_Lost", "Q227", em=tom, segment="MM_EMEA")
    decided("Closed_Lost", "Q227", em=tom, segment="MM_EMEA")
    decided("Closed_Won", "Q227")
    decided("Closed_Lost", "Q227", segment="SMB")
    decided("Closed_Won", "Q326", em=nadia, segment="SMB")
    decided("Closed_Won", "Q427", em=priya, segment="Ent_EAST")
    decided("Closed_Won", "Q325", em=priya, segment="SMB")
    decided("Closed_Won", "Q128", em=priya, segment="SMB")
    ScopingIssueFactory(labels=[SC, "proposal::SOW_WIP", "close_qtr::Q227"], engagement_manager=priya)
    ScopingIssueFactory(state=IssueState.CLOSED, labels=[SC, "close_qtr::Q227"], engagement_manager=priya)
    return team


def _deal(em, close: str, confidence: str, *, category: str = "Pipeline", **fields):
    fields.setdefault("proserv_amount", None)
    fields.setdefault("ps_value", None)
    fields.setdefault("amount", None)
    fields.setdefault("em_confidence_rationale", "Because" if confidence in ("Red", "Amber") else "")
    return OpportunityFactory(
        engagement_manager=em,
        close_date=date.fromisoformat(close),
        em_confidence=confidence,
        forecast_category=category,
        **fields,
    )


def pipeline() -> dict[str, Any]:
    """Open pipeline, in USD.

    Priya: Q427 Green 10,000 (Proserv amount) Commit; Q427 Amber 5,000 (PS value) Best Case;
    Q128 Red 40,000 (Amount) Pipeline. Tom: Q427 Grey 2,500.50 Pipeline; Q327 (overdue) Green 1,000
    Commit. No EM: Q128 Grey 700 Omitted. A closed won deal of 99,999 is not in the pipeline.

    By close quarter: Q327 1,000 (1); Q427 17,500.50 (3: Green 10,000, Amber 5,000, Grey 2,500.50);
    Q128 40,700 (2: Red 40,000, Grey 700). Total 59,200.50 (6).
    By EM: Priya 55,000 (3); Tom 3,500.50 (2); no EM 700 (1).
    Green: Commit 11,000 (2). Amber: Best Case 5,000. Red: Pipeline 40,000. Grey: Pipeline 2,500.50,
    Omitted 700.
    """
    team = people()
    priya, tom = team["priya"], team["tom"]
    team["green"] = _deal(
        priya,
        "2027-01-15",
        "Green",
        category="Commit",
        proserv_amount=Decimal("10000"),
        ps_value=Decimal("1"),
        amount=Decimal("2"),
        name="Acme - Migration",
    )
    team["amber"] = _deal(
        priya,
        "2026-12-28",
        "Amber",
        category="Best Case",
        ps_value=Decimal("5000"),
        name="Globex - QuickStart",
    )
    _deal(priya, "2027-03-10", "Red", amount=Decimal("40000"), name="Initech - Dedicated")
    team["grey"] = _deal(tom, "2027-01-30", "Grey", proserv_amount=Decimal("2500.50"), name="Hooli - CI/CD")
    _deal(
        tom, "2026-10-30", "Green", category="Commit", proserv_amount=Decimal("1000"), name="Stark - Training"
    )
    _deal(
        None, "2027-04-02", "Grey", category="Omitted", proserv_amount=Decimal("700"), name="Wayne - Advisory"
    )
    _deal(priya, "2026-12-01", "Green", proserv_amount=Decimal("99999"), is_closed=True, is_won=True)
    return team


def moved(opportunity, when: str, before: str, after: str, *, field: str = "CloseDate", **who) -> None:
    """A change recorded in the history, by default from Salesforce; `who` may name the person."""
    who.setdefault("source", ChangeSource.SALESFORCE)
    OpportunityChange.objects.create(
        opportunity=opportunity, field=field, old_value=before, new_value=after, changed_at=at(when), **who
    )


def slipped() -> dict[str, Any]:
    """Q427 runs from 2026-11-01 to 2027-01-31.

    Slipped out of Q427: A (2026-12-15 → 2027-02-20 on 2026-11-10, 10,000); B (out, back in, out
    again: its latest move 2026-12-20 → 2027-04-10 on 2026-12-01 by Dana Sales, 20,000); F (out to 2027-02-10 and
    back to 2027-01-10 by the next day: listed, now back in the quarter, 500). Totals: 3 deals, 30,500.
    Not slipped: C moved within the quarter; D moved out before the quarter began; E moved from Q128 to
    Q228; G moved out a second before midnight on 2026-10-31. H slipped out of Q327 (2026-10-15 →
    2026-11-20 on 2026-09-10).
    """
    team = people()
    priya, tom = team["priya"], team["tom"]
    deals = {
        "A": _deal(priya, "2027-02-20", "Green", proserv_amount=Decimal("10000"), name="A - Acme"),
        "B": _deal(tom, "2027-04-10", "Amber", proserv_amount=Decimal("20000"), name="B - Globex"),
        "C": _deal(priya, "2027-01-15", "Green", proserv_amount=Decimal("1"), name="C - Initech"),
        "D": _deal(priya, "2027-03-01", "Green", proserv_amount=Decimal("1"), name="D - Hooli"),
        "E": _deal(priya, "2027-06-01", "Green", proserv_amount=Decimal("1"), name="E - Stark"),
        "F": _deal(priya, "2027-01-10", "Grey", proserv_amount=Decimal("500"), name="F - Wayne"),
        "G": _deal(priya, "2027-03-03", "Green", proserv_amount=Decimal("1"), name="G - Umbrella"),
        "H": _deal(tom, "2026-11-20", "Green", proserv_amount=Decimal("7"), name="H - Tyrell"),
    }
    moved(deals["A"], "2026-11-10", "2026-12-15", "2027-02-20")
    moved(deals["B"], "2026-11-05", "2026-12-01", "2027-03-01")
    moved(deals["B"], "2026-11-20", "2027-03-01", "2026-12-20")
    moved(deals["B"], "2026-12-01", "2026-12-20", "2027-04-10", actor_name="Dana Sales")
    moved(deals["C"], "2026-12-01", "2026-12-01", "2027-01-15")
    moved(deals["D"], "2026-10-20", "2026-12-01", "2027-03-01")
    moved(deals["E"], "2026-11-15", "2027-03-01", "2027-06-01")
    moved(deals["F"], "2026-11-03", "2027-01-10", "2027-02-10")
    moved(deals["F"], "2026-11-04", "2027-02-10", "2027-01-10")
    OpportunityChange.objects.create(
        opportunity=deals["G"],
        source=ChangeSource.SALESFORCE,
        field="CloseDate",
        old_value="2027-01-05",
        new_value="2027-03-03",
        changed_at=datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC),
    )
    moved(deals["H"], "2026-09-10", "2026-10-15", "2026-11-20")
    return {**team, **deals}


def calibration() -> dict[str, Any]:
    """Window Q426-Q327 (the default on NOW: the four quarters up to the last complete one).

    Q327 (2026-08-01 to 2026-10-31), by the confidence on its first day:
    Green: G1 won in the quarter; G2 (Green then, Red now) lost after its date moved into Q427.
    Amber: A1 slipped to Q427 and was won there (won later); S1 was won in the quarter.
    Red: R1 lost; R2 (Red then, Green now) won in the quarter.
    Grey: Grey1 (confidence left empty) won in the quarter.
    Q227: S1 was due on 2026-07-10 and Green, slipped to 2026-08-20 and was won then (won later).
    Not counted: X1 closed before the window; X2 is still open; X3 was won in Q327 but was due in
    Q427 when Q327 began.

    Overall: Green 1 won in the quarter, 1 won later, 1 lost: held 1 of 3 (33 %). Amber 1, 1, 0: held
    2 of 2 (100 %). Red 1, 0, 1: held 1 of 2 (50 %). Grey 1, 0, 0: no claim.
    Priya (G1, G2, A1, S1): Green 1/1/1, Amber 1/1/0. Tom (R1, R2): Red 1/0/1. No EM: Grey 1/0/0.
    """
    team = people()
    priya, tom = team["priya"], team["tom"]

    def won(em, close: str, confidence: str, **fields):
        return _deal(em, close, confidence, is_closed=True, is_won=True, **fields)

    def lost(em, close: str, confidence: str, **fields):
        return _deal(em, close, confidence, is_closed=True, is_won=False, **fields)

    deals = {
        "G1": won(priya, "2026-09-10", "Green"),
        "G2": lost(priya, "2026-11-10", "Red"),
        "A1": won(priya, "2026-11-15", "Amber"),
        "R1": lost(tom, "2026-09-01", "Red"),
        "R2": won(tom, "2026-10-10", "Green"),
        "Grey1": won(None, "2026-08-20", ""),
        "X1": won(priya, "2025-10-01", "Green"),
        "X2": _deal(priya, "2026-10-30", "Green"),
        "X3": won(tom, "2026-10-05", "Green"),
        "S1": won(priya, "2026-08-20", "Amber"),
    }
    moved(deals["G2"], "2026-08-15", "Green", "Red", field="EMConfidence")
    moved(deals["G2"], "2026-08-20", "2026-10-20", "2026-11-10")
    moved(deals["A1"], "2026-10-20", "2026-10-25", "2026-11-15")
    moved(deals["R2"], "2026-09-05", "Red", "Green", field="EMConfidence")
    moved(deals["X3"], "2026-09-01", "2026-11-30", "2026-10-05")
    moved(deals["S1"], "2026-07-01", "2026-07-10", "2026-08-20")
    moved(deals["S1"], "2026-07-05", "Green", "Amber", field="EMConfidence")
    return {**team, **deals}


def quiet_issue(iid: int, last: str, **fields):
    """An open issue whose last activity was at 09:00 on `last`."""
    fields.setdefault("labels", [SC, "proposal::Estimate_Feedback"])
    return ScopingIssueFactory(
        iid=iid, title=f"Scoping #{iid}", updated_at=at(last), last_activity_at=at(last), **fields
    )


def stale() -> dict[str, Any]:
    """Two months without activity makes an issue stale; on NOW the cut-off is 2026-10-20 12:00.

    Going stale within 14 days: #201 (last activity 2026-10-25, stale on 2026-12-25). Not yet: #202
    (2026-11-10). Stale now, so the next run closes them: #203 (since 2026-09-30, stale on 2026-11-30)
    and #204 (its keep-open ended 2026-12-01: stale on 2026-12-02). Kept open: #205 until 2027-01-31,
    "Customer legal review until January", stale without it. Closed by the rule this quarter: #206
    (on 2026-11-15); last quarter: #207. #208's opportunity closed won: the next run marks it won.
    """
    team = people()
    priya = team["priya"]
    leader = UserFactory(username="lead", first_name="Lee", last_name="Leadership")

    quiet = quiet_issue
    issues = {
        201: quiet(201, "2026-10-25", engagement_manager=priya),
        202: quiet(202, "2026-11-10", engagement_manager=priya),
        203: quiet(203, "2026-09-30", engagement_manager=priya),
        204: quiet(204, "2026-08-01", engagement_manager=team["tom"], keep_open_until=date(2026, 12, 1)),
        205: quiet(
            205,
            "2026-09-01",
            engagement_manager=priya,
            keep_open_until=date(2027, 1, 31),
            keep_open_set_by=leader,
            keep_open_set_at=at("2026-10-30"),
            keep_open_reason="Customer legal review until January",
        ),
        206: quiet(
            206,
            "2026-09-14",
            state=IssueState.CLOSED,
            labels=[SC, "proposal::Closed_Lost", "close_qtr::Q427"],
        ),
        207: quiet(
            207,
            "2026-08-14",
            state=IssueState.CLOSED,
            labels=[SC, "proposal::Closed_Lost", "close_qtr::Q327"],
        ),
        208: quiet(
            208,
            "2026-12-01",
            engagement_manager=priya,
            opportunity=OpportunityFactory(is_closed=True, is_won=True, close_date=date(2026, 12, 10)),
        ),
    }
    RuleAction.objects.create(
        issue=issues[206],
        rule=RuleAction.Rule.STALE,
        reason="2026-11-14",
        close_qtr="Q427",
        applied_at=at("2026-11-15"),
    )
    RuleAction.objects.create(
        issue=issues[207],
        rule=RuleAction.Rule.STALE,
        reason="2026-10-14",
        close_qtr="Q327",
        applied_at=at("2026-10-15"),
    )
    return {**team, "leader": leader, **issues}


def data_quality() -> dict[str, Any]:
    """One record for each check, plus look-alikes that pass it.

    Opportunities (open): "No EM" has none; "Red, no reason" and "Amber, blank reason" (spaces only)
    lack a rationale; "Grey soon" closes in 10 days and "Grey overdue" closed 5 days ago, both Grey;
    "Grey later" (40 days) and "Green, no reason" pass. A closed opportunity without an EM passes.
    Issues: #301 is open without an EM; #302 was won without a close_qtr; #303 is closed without an
    outcome (passes); #304 has two workflow labels; #305 an unknown segment; #306 names one opportunity
    in its description while another links to it; #307 has a malformed close_qtr.
    Nadia is not linked to GitLab.
    """
    team = people()
    priya = team["priya"]
    records = {
        "No EM": _deal(None, "2027-02-01", "Green", proserv_amount=Decimal("100")),
        "Red, no reason": _deal(priya, "2027-02-01", "Red", em_confidence_rationale=""),
        "Amber, blank reason": _deal(priya, "2027-02-01", "Amber", em_confidence_rationale="   "),
        "Grey soon": _deal(priya, "2026-12-30", "Grey"),
        "Grey overdue": _deal(priya, "2026-12-15", "Grey"),
        "Grey later": _deal(priya, "2027-01-29", "Grey"),
        "Green, no reason": _deal(priya, "2027-02-01", "Green"),
    }
    for name, deal in records.items():
        deal.name = name
        deal.save(update_fields=["name"])
    _deal(None, "2026-11-01", "Grey", is_closed=True)
    named = _deal(priya, "2027-02-01", "Green", salesforce_id="006000000000306AAA", name="Named in #306")
    linking = _deal(
        priya,
        "2027-02-01",
        "Green",
        name="Links to #306",
        scoping_issue_link="https://gitlab.example/ps/-/issues/306",
    )
    ScopingIssueFactory(iid=301, labels=[SC, "Open"])
    ScopingIssueFactory(
        iid=302, state=IssueState.CLOSED, labels=[SC, "proposal::Closed_Won"], engagement_manager=priya
    )
    ScopingIssueFactory(iid=303, state=IssueState.CLOSED, labels=[SC], engagement_manager=priya)
    ScopingIssueFactory(
        iid=304, labels=[SC, "proposal::SOW_WIP", "proposal::Approved"], assignee_usernames=["praman"]
    )
    ScopingIssueFactory(
        iid=305, labels=[SC, "proposal::SOW_WIP", "Segment::Ent_LATAM"], assignee_usernames=["praman"]
    )
    ScopingIssueFactory(
        iid=306,
        labels=[SC, "proposal::SOW_WIP"],
        assignee_usernames=["praman"],
        description=f"Opportunity: {named.salesforce_id}",
    )
    ScopingIssueFactory(
        iid=307, labels=[SC, "proposal::SOW_WIP", "close_qtr::Q3-27"], assignee_usernames=["praman"]
    )
    refresh_issues()
    return {**team, **records, "named": named, "linking": linking}
