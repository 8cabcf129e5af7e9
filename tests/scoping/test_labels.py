"""Label parsing and formatting: every variant read, only canonical forms written, problems as data."""

from __future__ import annotations

import pytest

from opportunities.choices import Segment
from scoping import labels
from scoping.choices import EMStatus, IssueState, ProblemKind, Stage

SC = "Services Calculator"

# (labels, expected workflow stage, segment, em_status, close_qtr, public_sector, problem kinds)
PARSE_CASES = [
    ([SC], None, None, None, "", False, []),
    ([SC, "Open"], Stage.OPEN, None, None, "", False, []),
    (["open"], Stage.OPEN, None, None, "", False, []),
    (["proposal::Awaiting_Discovery"], Stage.AWAITING_DISCOVERY, None, None, "", False, []),
    (["proposal::Strawman_WIP"], Stage.STRAWMAN_WIP, None, None, "", False, []),
    (["proposal::Estimate_Feedback"], Stage.ESTIMATE_FEEDBACK, None, None, "", False, []),
    (["proposal::On_hold"], Stage.ON_HOLD, None, None, "", False, []),
    (["proposal::On_Hold"], Stage.ON_HOLD, None, None, "", False, []),
    (["proposal::SOW_WIP"], Stage.SOW_WIP, None, None, "", False, []),
    (["proposal::Ready For Approval"], Stage.READY_FOR_APPROVAL, None, None, "", False, []),
    (["proposal::Ready_For_Approval"], Stage.READY_FOR_APPROVAL, None, None, "", False, []),
    (["proposal::Approved"], Stage.APPROVED, None, None, "", False, []),
    (["proposal::Closed_Won"], Stage.CLOSED_WON, None, None, "", False, []),
    (["proposal:Closed_Won"], Stage.CLOSED_WON, None, None, "", False, []),
    (["proposal::closed_won"], Stage.CLOSED_WON, None, None, "", False, []),
    (["Proposal::CLOSED_WON"], Stage.CLOSED_WON, None, None, "", False, []),
    (["proposal :: Closed_Lost"], Stage.CLOSED_LOST, None, None, "", False, []),
    (["proposal:Closed_Lost"], Stage.CLOSED_LOST, None, None, "", False, []),
    (["proposal::Closed-Lost"], Stage.CLOSED_LOST, None, None, "", False, []),
    (["proposal::Negotiating"], None, None, None, "", False, [ProblemKind.UNKNOWN_WORKFLOW_LABEL]),
    (["Open", "proposal::SOW_WIP"], Stage.SOW_WIP, None, None, "", False, [ProblemKind.TWO_WORKFLOW_LABELS]),
    (
        ["proposal::Closed_Won", "proposal::Closed_Lost"],
        Stage.CLOSED_LOST,
        None,
        None,
        "",
        False,
        [ProblemKind.TWO_WORKFLOW_LABELS],
    ),
    (["proposal::Closed_Won", "proposal:closed_won"], Stage.CLOSED_WON, None, None, "", False, []),
    (["Segment::Ent_APAC"], None, Segment.ENT_APAC, None, "", False, []),
    (["Segment::Ent_EAST"], None, Segment.ENT_EAST, None, "", False, []),
    (["Segment::Ent_East"], None, Segment.ENT_EAST, None, "", False, []),
    (["segment:ent_west"], None, Segment.ENT_WEST, None, "", False, []),
    (["Segment::Ent_EMEA"], None, Segment.ENT_EMEA, None, "", False, []),
    (["Segment::MM_APAC"], None, Segment.MM_APAC, None, "", False, []),
    (["Segment::MM_EAST"], None, Segment.MM_EAST, None, "", False, []),
    (["Segment::MM_EMEA"], None, Segment.MM_EMEA, None, "", False, []),
    (["Segment::MM_West"], None, Segment.MM_WEST, None, "", False, []),
    (["Segment::SMB"], None, Segment.SMB, None, "", False, []),
    (["Ent_APAC"], None, Segment.ENT_APAC, None, "", False, []),
    (["smb"], None, Segment.SMB, None, "", False, []),
    (["Segment::Ent_LATAM"], None, None, None, "", False, [ProblemKind.UNKNOWN_SEGMENT]),
    (["Segment::SMB", "Ent_EMEA"], None, None, None, "", False, [ProblemKind.TWO_SEGMENTS]),
    (["Segment::SMB", "SMB"], None, Segment.SMB, None, "", False, []),
    (["EM_Status::Waiting"], None, None, EMStatus.WAITING, "", False, []),
    (["EM_Status::ToDo"], None, None, EMStatus.TODO, "", False, []),
    (["em_status:todo"], None, None, EMStatus.TODO, "", False, []),
    (["EM_Status::Blocked"], None, None, None, "", False, [ProblemKind.UNKNOWN_EM_STATUS]),
    (["EM_Status::Waiting", "EM_Status::ToDo"], None, None, None, "", False, [ProblemKind.TWO_EM_STATUSES]),
    (["close_qtr::Q323"], None, None, None, "Q323", False, []),
    (["close_qtr:Q323"], None, None, None, "Q323", False, []),
    (["Close_Qtr::q425"], None, None, None, "Q425", False, []),
    (["close_qtr::Q3-23"], None, None, None, "", False, [ProblemKind.MALFORMED_CLOSE_QTR]),
    (["close_qtr::Q523"], None, None, None, "", False, [ProblemKind.MALFORMED_CLOSE_QTR]),
    (["close_qtr::FY23Q3"], None, None, None, "", False, [ProblemKind.MALFORMED_CLOSE_QTR]),
    (["close_qtr::"], None, None, None, "", False, [ProblemKind.MALFORMED_CLOSE_QTR]),
    (["close_qtr::Q323", "close_qtr::Q423"], None, None, None, "Q423", False, [ProblemKind.TWO_CLOSE_QTRS]),
    (["Public Sector US"], None, None, None, "", True, []),
    (["public sector us"], None, None, None, "", True, []),
    (["type::bug", "priority::1", "Services Calculator"], None, None, None, "", False, []),
    ([], None, None, None, "", False, []),
    (["::", ":", "   "], None, None, None, "", False, []),
    (
        [SC, "proposal::SOW_WIP", "Segment::MM_EMEA", "EM_Status::ToDo", "Public Sector US"],
        Stage.SOW_WIP,
        Segment.MM_EMEA,
        EMStatus.TODO,
        "",
        True,
        [],
    ),
]


@pytest.mark.parametrize(
    ("raw", "stage", "segment", "em_status", "close_qtr", "public_sector", "problems"), PARSE_CASES
)
def test_labels_are_read_in_every_variant(raw, stage, segment, em_status, close_qtr, public_sector, problems):
    parsed = labels.parse_labels(raw)
    assert parsed.workflow_stage == stage
    assert parsed.segment == segment
    assert parsed.em_status == em_status
    assert parsed.close_qtr == close_qtr
    assert parsed.public_sector is public_sector
    assert [problem.kind for problem in parsed.problems] == problems


def test_there_are_at_least_forty_parse_cases():
    assert len(PARSE_CASES) >= 40


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("proposal:Closed_Won", "proposal::Closed_Won"),
        ("proposal::closed_lost", "proposal::Closed_Lost"),
        ("Ent_East", "Segment::Ent_EAST"),
        ("mm_west", "Segment::MM_West"),
        ("close_qtr:q323", "close_qtr::Q323"),
        ("open", "Open"),
    ],
)
def test_variants_are_reported_with_their_canonical_form(raw, canonical):
    assert labels.parse_labels([raw]).variants == ((raw, canonical),)


def test_a_problem_names_the_offending_label():
    (problem,) = labels.parse_labels(["Segment::Ent_LATAM"]).problems
    assert problem.labels == ("Segment::Ent_LATAM",)
    assert "Ent_LATAM" in problem.message


@pytest.mark.parametrize(
    ("raw", "state", "column"),
    [
        (["Open"], IssueState.OPENED, Stage.OPEN),
        ([SC], IssueState.OPENED, Stage.OPEN),
        (["proposal::SOW_WIP"], IssueState.OPENED, Stage.SOW_WIP),
        (["proposal::SOW_WIP"], IssueState.CLOSED, Stage.CLOSED),
        ([SC], IssueState.CLOSED, Stage.CLOSED),
        (["proposal::Closed_Won"], IssueState.CLOSED, Stage.CLOSED_WON),
        (["proposal:closed_lost"], IssueState.CLOSED, Stage.CLOSED_LOST),
    ],
)
def test_board_column_follows_labels_and_state(raw, state, column):
    assert labels.parse_labels(raw).stage_for_state(state) == column


def test_won_issue_without_close_qtr_and_still_open_has_two_state_problems():
    parsed = labels.parse_labels(["proposal::Closed_Won"])
    kinds = [p.kind for p in labels.state_problems(parsed, IssueState.OPENED)]
    assert kinds == [ProblemKind.MISSING_CLOSE_QTR, ProblemKind.OUTCOME_ON_OPEN_ISSUE]


@pytest.mark.parametrize(
    ("stage", "label"),
    [
        (Stage.OPEN, "Open"),
        (Stage.AWAITING_DISCOVERY, "proposal::Awaiting_Discovery"),
        (Stage.READY_FOR_APPROVAL, "proposal::Ready For Approval"),
        (Stage.CLOSED_WON, "proposal::Closed_Won"),
        (Stage.CLOSED, None),
    ],
)
def test_workflow_labels_are_written_in_canonical_form(stage, label):
    assert labels.workflow_label(stage) == label


def test_other_families_are_written_in_canonical_form():
    assert labels.segment_label(Segment.MM_EAST) == "Segment::MM_East"
    assert labels.em_status_label("ToDo") == "EM_Status::ToDo"
    assert labels.close_qtr_label("q323") == "close_qtr::Q323"
    assert labels.PUBLIC_SECTOR_LABEL in labels.canonical_labels()
    assert len(labels.canonical_labels()) == 10 + 9 + 2 + 1


def test_stage_change_removes_every_workflow_variant_and_keeps_other_labels():
    current = [SC, "Open", "proposal:Strawman_WIP", "proposal::Bogus", "Segment::SMB", "someone-else"]
    change = labels.change_for_stage(current, Stage.SOW_WIP)
    assert change.add == ("proposal::SOW_WIP",)
    assert set(change.remove) == {"Open", "proposal:Strawman_WIP", "proposal::Bogus"}
    assert change.applied_to(current) == [SC, "Segment::SMB", "someone-else", "proposal::SOW_WIP"]


def test_moving_to_closed_removes_the_workflow_label_and_adds_nothing():
    change = labels.change_for_stage([SC, "proposal::SOW_WIP"], Stage.CLOSED)
    assert change == labels.LabelChange(add=(), remove=("proposal::SOW_WIP",))


def test_setting_the_stage_an_issue_already_has_is_no_change():
    assert not labels.change_for_stage([SC, "proposal::SOW_WIP"], Stage.SOW_WIP)


def test_variant_of_the_target_stage_is_replaced_by_the_canonical_label():
    change = labels.change_for_stage(["proposal:closed_won"], Stage.CLOSED_WON)
    assert change == labels.LabelChange(add=("proposal::Closed_Won",), remove=("proposal:closed_won",))


def test_segment_change_replaces_a_prefixless_segment_and_clearing_removes_it():
    assert labels.change_for_segment(["Ent_East"], Segment.SMB) == labels.LabelChange(
        add=("Segment::SMB",), remove=("Ent_East",)
    )
    assert labels.change_for_segment(["Segment::SMB", SC], None) == labels.LabelChange(
        remove=("Segment::SMB",)
    )


def test_close_qtr_and_em_status_changes_replace_malformed_and_old_values():
    assert labels.change_for_close_qtr(["close_qtr::Q3-23"], "Q323") == labels.LabelChange(
        add=("close_qtr::Q323",), remove=("close_qtr::Q3-23",)
    )
    assert labels.change_for_em_status(["EM_Status::Waiting"], EMStatus.TODO) == labels.LabelChange(
        add=("EM_Status::ToDo",), remove=("EM_Status::Waiting",)
    )


def test_combined_changes_never_add_what_the_other_removes():
    combined = labels.LabelChange(add=("a",), remove=("b",)) | labels.LabelChange(
        add=("b", "c"), remove=("a",)
    )
    assert combined == labels.LabelChange(add=("c",), remove=("b", "a"))
