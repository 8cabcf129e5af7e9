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


def test_canonical_labels_are_not_reported_as_variants():
    canonical = [
        "Open",
        "proposal::SOW_WIP",
        "Segment::SMB",
        "EM_Status::ToDo",
        "close_qtr::Q323",
        "Public Sector US",
        SC,
    ]

    assert labels.parse_labels(canonical).variants == ()


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        (
            "proposal::Negotiating",
            ProblemKind.UNKNOWN_WORKFLOW_LABEL,
            "'proposal::Negotiating' is not a workflow stage",
        ),
        (
            "proposal::Closed",
            ProblemKind.UNKNOWN_WORKFLOW_LABEL,
            "'proposal::Closed' is not a workflow stage",
        ),
        ("Segment::Ent_LATAM", ProblemKind.UNKNOWN_SEGMENT, "'Segment::Ent_LATAM' is not a known segment"),
        ("EM_Status::Blocked", ProblemKind.UNKNOWN_EM_STATUS, "'EM_Status::Blocked' is not Waiting or ToDo"),
        (
            "close_qtr::Q3-23",
            ProblemKind.MALFORMED_CLOSE_QTR,
            "'close_qtr::Q3-23' is not like close_qtr::Q323",
        ),
    ],
)
def test_a_label_that_cannot_be_understood_is_named_in_a_problem_saying_what_is_wrong(raw, kind, message):
    (problem,) = labels.parse_labels([SC, raw]).problems

    assert (problem.kind, problem.labels, problem.message) == (kind, (raw,), message)


def test_conflicting_labels_are_named_together_in_one_problem():
    (problem,) = labels.parse_labels(["Segment::SMB", "Ent_EMEA"]).problems

    assert problem.labels == ("Segment::SMB", "Ent_EMEA")
    assert problem.message == "'Segment::SMB', 'Ent_EMEA' conflict"


def test_of_two_close_quarters_the_later_fiscal_quarter_wins_not_the_larger_string():
    parsed = labels.parse_labels(["close_qtr::Q424", "close_qtr::Q125"])

    assert parsed.close_qtr == "Q125"  # Q1 of FY2025 comes after Q4 of FY2024


# (labels, state, expected (kind, message) pairs)
STATE_PROBLEM_CASES = [
    (
        ["proposal::Closed_Won"],
        IssueState.OPENED,
        [
            (ProblemKind.MISSING_CLOSE_QTR, "Won or lost, but no close_qtr label"),
            (ProblemKind.OUTCOME_ON_OPEN_ISSUE, "Won or lost, but the issue is open"),
        ],
    ),
    (
        ["proposal::Closed_Lost"],
        IssueState.CLOSED,
        [
            (ProblemKind.MISSING_CLOSE_QTR, "Won or lost, but no close_qtr label"),
        ],
    ),
    (
        ["proposal::Closed_Won", "close_qtr::Q323"],
        IssueState.OPENED,
        [
            (ProblemKind.OUTCOME_ON_OPEN_ISSUE, "Won or lost, but the issue is open"),
        ],
    ),
    (["proposal::Closed_Lost", "close_qtr::Q323"], IssueState.CLOSED, []),
    (["proposal::SOW_WIP"], IssueState.OPENED, []),  # no outcome: no close_qtr needed while open
    (["proposal::SOW_WIP"], IssueState.CLOSED, []),
    ([SC], IssueState.CLOSED, []),
    (["Open", "close_qtr::Q323"], IssueState.OPENED, []),
]


@pytest.mark.parametrize(("raw", "state", "expected"), STATE_PROBLEM_CASES)
def test_an_outcome_needs_a_close_qtr_and_a_closed_issue_and_nothing_else_does(raw, state, expected):
    found = labels.state_problems(labels.parse_labels(raw), state)

    assert [(problem.kind, problem.message) for problem in found] == expected
    assert all(problem.labels == () for problem in found)


@pytest.mark.parametrize(
    ("change", "is_a_change"),
    [
        (labels.LabelChange(), False),
        (labels.LabelChange(add=("Segment::SMB",)), True),
        (labels.LabelChange(remove=("Segment::SMB",)), True),
        (labels.LabelChange(add=("Segment::SMB",), remove=("Ent_EMEA",)), True),
    ],
)
def test_a_change_that_only_adds_or_only_removes_is_still_a_change(change, is_a_change):
    assert bool(change) is is_a_change


@pytest.mark.parametrize(
    ("change_for", "current", "expected_removal"),
    [
        (labels.change_for_em_status, [SC, "EM_Status::Waiting"], "EM_Status::Waiting"),
        (labels.change_for_close_qtr, [SC, "close_qtr:q323"], "close_qtr:q323"),
        (labels.change_for_segment, [SC, "Ent_East"], "Ent_East"),
    ],
)
@pytest.mark.parametrize("nothing", [None, ""])
def test_clearing_a_family_removes_its_label_and_adds_nothing(change_for, current, expected_removal, nothing):
    assert change_for(current, nothing) == labels.LabelChange(remove=(expected_removal,))


@pytest.mark.parametrize(
    ("label", "may_be_created"),
    [
        ("close_qtr::Q125", True),
        ("close_qtr::Q499", True),
        ("close_qtr:Q125", False),  # a variant: PS Plan writes only canonical labels
        ("close_qtr::q125", False),
        ("close_qtr::Q3-23", False),
        ("Segment::SMB", False),  # canonical, but every other family's labels exist already
        ("proposal::Closed_Won", False),
        ("Open", False),
        ("type::bug", False),
    ],
)
def test_only_a_canonical_close_qtr_label_counts_as_a_new_quarters_label(label, may_be_created):
    assert labels.is_new_quarter_label(label) is may_be_created


# (labels the issue has now, what the writes want, labels to add, labels to remove)
INTENT_CASES = [
    ([SC, "Open"], {}, (), ()),
    ([SC, "Open"], {"stage": "SOW_WIP"}, ("proposal::SOW_WIP",), ("Open",)),
    ([SC, "proposal::SOW_WIP"], {"stage": "SOW_WIP"}, (), ()),
    ([SC, "proposal::SOW_WIP"], {"stage": "Closed"}, (), ("proposal::SOW_WIP",)),
    ([SC, "Ent_East"], {"segment": "SMB"}, ("Segment::SMB",), ("Ent_East",)),
    ([SC, "Segment::SMB"], {"segment": None}, (), ("Segment::SMB",)),
    ([SC], {"em_status": "ToDo"}, ("EM_Status::ToDo",), ()),
    ([SC, "EM_Status::ToDo"], {"em_status": None}, (), ("EM_Status::ToDo",)),
    ([SC, "close_qtr::Q3-23"], {"close_qtr": "Q225"}, ("close_qtr::Q225",), ("close_qtr::Q3-23",)),
    ([SC, "close_qtr::Q225"], {"close_qtr": None}, (), ("close_qtr::Q225",)),
    (
        [SC, "proposal::SOW_WIP", "close_qtr::Q125", "customer-x"],
        {"stage": "Closed_Lost", "close_qtr": "Q225", "state": "closed"},
        ("proposal::Closed_Lost", "close_qtr::Q225"),
        ("proposal::SOW_WIP", "close_qtr::Q125"),
    ),
    # Only the families the intent names are touched, whatever the others say.
    (
        [SC, "proposal::Bogus", "Segment::Ent_LATAM", "EM_Status::Waiting", "close_qtr::Q3-23"],
        {"segment": "SMB"},
        ("Segment::SMB",),
        ("Segment::Ent_LATAM",),
    ),
    ([SC, "Open"], {"state": "closed", "assignee_ids": [7]}, (), ()),
]


@pytest.mark.parametrize(("current", "intent", "add", "remove"), INTENT_CASES)
def test_a_queued_intent_becomes_the_smallest_change_against_the_labels_of_the_moment(
    current, intent, add, remove
):
    change = labels.change_for_intent(current, intent)

    assert change == labels.LabelChange(add=add, remove=remove)


def test_an_intent_reads_labels_given_once_as_an_iterator():
    change = labels.change_for_intent(
        iter([SC, "Open", "EM_Status::Waiting"]), {"stage": "SOW_WIP", "em_status": "ToDo"}
    )

    assert change == labels.LabelChange(
        add=("proposal::SOW_WIP", "EM_Status::ToDo"), remove=("Open", "EM_Status::Waiting")
    )
