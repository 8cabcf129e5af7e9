"""The one place that reads and writes GitLab labels.

Real issues carry variants (`proposal:Closed_Won`, `proposal::closed_won`, `Ent_East`, a segment
without `Segment::`): every variant is read, only the canonical forms of CONTRACT.md are written,
and anything that cannot be understood becomes a problem in the result instead of an exception.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from opportunities.choices import Segment
from psplan.fiscal import FiscalQuarter
from scoping.choices import EMStatus, IssueState, ProblemKind, Stage

WORKFLOW_SCOPE = "proposal"
SEGMENT_SCOPE = "Segment"
EM_STATUS_SCOPE = "EM_Status"
CLOSE_QTR_SCOPE = "close_qtr"
OPEN_LABEL = "Open"
PUBLIC_SECTOR_LABEL = "Public Sector US"

_SCOPED = re.compile(r"^\s*(?P<scope>[^:]+?)\s*::?\s*(?P<value>.*?)\s*$")
_CLOSE_QTR_VALUE = re.compile(r"^Q[1-4]\d{2}$", re.IGNORECASE)


def _key(text: str) -> str:
    """Comparison key that ignores letter case, spaces, underscores and hyphens."""
    return re.sub(r"[\s_\-]+", "", text).lower()


_STAGE_BY_KEY = {_key(stage.value): stage for stage in Stage if stage is not Stage.CLOSED}
_SEGMENT_BY_KEY = {_key(segment.value): segment for segment in Segment}
_EM_STATUS_BY_KEY = {_key(status.value): status for status in EMStatus}
_SCOPE_KEYS = {
    _key(WORKFLOW_SCOPE): WORKFLOW_SCOPE,
    _key(SEGMENT_SCOPE): SEGMENT_SCOPE,
    _key(EM_STATUS_SCOPE): EM_STATUS_SCOPE,
    _key(CLOSE_QTR_SCOPE): CLOSE_QTR_SCOPE,
}


@dataclass(frozen=True)
class LabelProblem:
    kind: ProblemKind
    labels: tuple[str, ...]
    message: str


@dataclass(frozen=True)
class ParsedLabels:
    """What an issue's labels say, in PS Plan's terms."""

    workflow_stage: Stage | None = None
    segment: Segment | None = None
    em_status: EMStatus | None = None
    close_qtr: str = ""
    public_sector: bool = False
    problems: tuple[LabelProblem, ...] = ()
    variants: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """(label as found, canonical form) for every non-canonical label that was understood."""

    def stage_for_state(self, state: str) -> Stage:
        """The board column: a closed issue without an outcome label is in Closed."""
        if state == IssueState.CLOSED and self.workflow_stage not in Stage.outcomes():
            return Stage.CLOSED
        return self.workflow_stage or Stage.OPEN


@dataclass(frozen=True)
class _Reading:
    """One label understood: which family it belongs to, its value, its canonical text."""

    family: str
    value: object
    canonical: str


def _read_one(label: str) -> _Reading | LabelProblem | None:
    """Classify one raw label; None for labels PS Plan does not use."""
    text = label.strip()
    if _key(text) == _key(OPEN_LABEL):
        return _Reading(WORKFLOW_SCOPE, Stage.OPEN, OPEN_LABEL)
    if _key(text) == _key(PUBLIC_SECTOR_LABEL):
        return _Reading(PUBLIC_SECTOR_LABEL, True, PUBLIC_SECTOR_LABEL)
    match = _SCOPED.match(text)
    if match is None:
        segment = _SEGMENT_BY_KEY.get(_key(text))
        return _Reading(SEGMENT_SCOPE, segment, segment_label(segment)) if segment else None
    scope = _SCOPE_KEYS.get(_key(match["scope"]))
    value = match["value"]
    if scope == WORKFLOW_SCOPE:
        stage = _STAGE_BY_KEY.get(_key(value))
        if stage is None:
            return LabelProblem(
                ProblemKind.UNKNOWN_WORKFLOW_LABEL, (label,), f"{label!r} is not a workflow stage"
            )
        return _Reading(WORKFLOW_SCOPE, stage, workflow_label(stage) or "")
    if scope == SEGMENT_SCOPE:
        segment = _SEGMENT_BY_KEY.get(_key(value))
        if segment is None:
            return LabelProblem(ProblemKind.UNKNOWN_SEGMENT, (label,), f"{label!r} is not a known segment")
        return _Reading(SEGMENT_SCOPE, segment, segment_label(segment))
    if scope == EM_STATUS_SCOPE:
        status = _EM_STATUS_BY_KEY.get(_key(value))
        if status is None:
            return LabelProblem(ProblemKind.UNKNOWN_EM_STATUS, (label,), f"{label!r} is not Waiting or ToDo")
        return _Reading(EM_STATUS_SCOPE, status, em_status_label(status))
    if scope == CLOSE_QTR_SCOPE:
        if not _CLOSE_QTR_VALUE.match(value):
            return LabelProblem(
                ProblemKind.MALFORMED_CLOSE_QTR, (label,), f"{label!r} is not like close_qtr::Q323"
            )
        code = FiscalQuarter.parse(value).code
        return _Reading(CLOSE_QTR_SCOPE, code, close_qtr_label(code))
    segment = _SEGMENT_BY_KEY.get(_key(text))
    return _Reading(SEGMENT_SCOPE, segment, segment_label(segment)) if segment else None


_DUPLICATE_PROBLEMS = {
    WORKFLOW_SCOPE: ProblemKind.TWO_WORKFLOW_LABELS,
    SEGMENT_SCOPE: ProblemKind.TWO_SEGMENTS,
    EM_STATUS_SCOPE: ProblemKind.TWO_EM_STATUSES,
    CLOSE_QTR_SCOPE: ProblemKind.TWO_CLOSE_QTRS,
}
_STAGE_ORDER = {stage: index for index, stage in enumerate(Stage)}


def parse_labels(labels: Iterable[str]) -> ParsedLabels:
    """Read an issue's labels; never raises, whatever the labels are."""
    return _parse(tuple(labels))


# A project has a few hundred distinct label sets among thousands of issues: parse each set once.
@functools.lru_cache(maxsize=4096)
def _parse(labels: tuple[str, ...]) -> ParsedLabels:
    found: dict[str, dict[object, list[str]]] = {family: {} for family in _DUPLICATE_PROBLEMS}
    problems: list[LabelProblem] = []
    variants: list[tuple[str, str]] = []
    public_sector = False
    for label in labels:
        reading = _read_one(label)
        if reading is None:
            continue
        if isinstance(reading, LabelProblem):
            problems.append(reading)
            continue
        if reading.canonical != label:
            variants.append((label, reading.canonical))
        if reading.family == PUBLIC_SECTOR_LABEL:
            public_sector = True
        else:
            found[reading.family].setdefault(reading.value, []).append(label)
    for family, values in found.items():
        if len(values) > 1:
            raw = tuple(label for group in values.values() for label in group)
            problems.append(
                LabelProblem(_DUPLICATE_PROBLEMS[family], raw, f"{', '.join(map(repr, raw))} conflict")
            )
    # With two workflow labels, the most advanced stage wins so the issue shows where work reached.
    stages = sorted(found[WORKFLOW_SCOPE], key=lambda stage: _STAGE_ORDER[stage])
    return ParsedLabels(
        workflow_stage=stages[-1] if stages else None,
        segment=_single(found[SEGMENT_SCOPE]),
        em_status=_single(found[EM_STATUS_SCOPE]),
        close_qtr=_latest_quarter(found[CLOSE_QTR_SCOPE]),
        public_sector=public_sector,
        problems=tuple(problems),
        variants=tuple(variants),
    )


def _single(values: dict) -> object | None:
    """The value when exactly one was found; conflicting values mean unknown."""
    return next(iter(values)) if len(values) == 1 else None


def _latest_quarter(codes: dict) -> str:
    return max(codes, key=lambda code: FiscalQuarter.parse(code)) if codes else ""


def state_problems(parsed: ParsedLabels, state: str) -> tuple[LabelProblem, ...]:
    """Problems that need the issue's state as well as its labels."""
    outcome = parsed.workflow_stage in Stage.outcomes()
    problems = []
    if outcome and not parsed.close_qtr:
        problems.append(
            LabelProblem(ProblemKind.MISSING_CLOSE_QTR, (), "Won or lost, but no close_qtr label")
        )
    if outcome and state == IssueState.OPENED:
        problems.append(
            LabelProblem(ProblemKind.OUTCOME_ON_OPEN_ISSUE, (), "Won or lost, but the issue is open")
        )
    return tuple(problems)


# --- Writing: canonical forms only -------------------------------------------------------------


def workflow_label(stage: Stage) -> str | None:
    """`Open`, `proposal::<Stage>`; None for Closed, which is the issue's state, not a label."""
    if stage == Stage.OPEN:
        return OPEN_LABEL
    if stage == Stage.CLOSED:
        return None
    return f"{WORKFLOW_SCOPE}::{Stage(stage).value}"


def segment_label(segment: Segment | str) -> str:
    return f"{SEGMENT_SCOPE}::{Segment(segment).value}"


def em_status_label(status: EMStatus | str) -> str:
    return f"{EM_STATUS_SCOPE}::{EMStatus(status).value}"


def close_qtr_label(code: str) -> str:
    return f"{CLOSE_QTR_SCOPE}::{FiscalQuarter.parse(code).code}"


def is_new_quarter_label(label: str) -> bool:
    """A canonical `close_qtr::QNYY` label: every fiscal quarter needs a new one, so PS Plan may create it."""
    reading = _read_one(label)
    return isinstance(reading, _Reading) and reading.family == CLOSE_QTR_SCOPE and reading.canonical == label


def canonical_labels() -> list[str]:
    """Every label PS Plan may write; the GitLab project must have them all."""
    stages = [workflow_label(stage) for stage in Stage]
    return [
        *(label for label in stages if label),
        *(segment_label(segment) for segment in Segment),
        *(em_status_label(status) for status in EMStatus),
        PUBLIC_SECTOR_LABEL,
    ]


@dataclass(frozen=True)
class LabelChange:
    """Labels to add and remove: GitLab gets only the change, so others' labels survive."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.remove)

    def __or__(self, other: LabelChange) -> LabelChange:
        remove = tuple(dict.fromkeys((*self.remove, *other.remove)))
        add = tuple(label for label in dict.fromkeys((*self.add, *other.add)) if label not in remove)
        return LabelChange(add=add, remove=remove)

    def applied_to(self, labels: Iterable[str]) -> list[str]:
        kept = [label for label in labels if label not in self.remove]
        return kept + [label for label in self.add if label not in kept]


def _replace_family(labels: Iterable[str], family: str, canonical: str | None) -> LabelChange:
    """Remove every label of a family (any variant, unknown values too) and add one canonical."""
    current = list(labels)
    remove = tuple(label for label in current if _family_of(label) == family and label != canonical)
    add = (canonical,) if canonical and canonical not in current else ()
    return LabelChange(add=add, remove=remove)


def _family_of(label: str) -> str | None:
    reading = _read_one(label)
    if isinstance(reading, _Reading):
        return reading.family
    if isinstance(reading, LabelProblem):
        return {
            ProblemKind.UNKNOWN_WORKFLOW_LABEL: WORKFLOW_SCOPE,
            ProblemKind.UNKNOWN_SEGMENT: SEGMENT_SCOPE,
            ProblemKind.UNKNOWN_EM_STATUS: EM_STATUS_SCOPE,
            ProblemKind.MALFORMED_CLOSE_QTR: CLOSE_QTR_SCOPE,
        }[reading.kind]
    return None


def change_for_stage(labels: Iterable[str], stage: Stage) -> LabelChange:
    """Scoped exclusivity done here, since GitLab's free tier does not enforce it."""
    return _replace_family(labels, WORKFLOW_SCOPE, workflow_label(Stage(stage)))


def change_for_segment(labels: Iterable[str], segment: Segment | str | None) -> LabelChange:
    return _replace_family(labels, SEGMENT_SCOPE, segment_label(segment) if segment else None)


def change_for_em_status(labels: Iterable[str], status: EMStatus | str | None) -> LabelChange:
    return _replace_family(labels, EM_STATUS_SCOPE, em_status_label(status) if status else None)


def change_for_close_qtr(labels: Iterable[str], code: str | None) -> LabelChange:
    return _replace_family(labels, CLOSE_QTR_SCOPE, close_qtr_label(code) if code else None)


# Label families a queued write may want; each maps to the change that gives an issue that value.
_INTENT_CHANGES: dict[str, Callable[[list[str], object], LabelChange]] = {
    "stage": change_for_stage,  # type: ignore[dict-item]
    "segment": change_for_segment,  # type: ignore[dict-item]
    "em_status": change_for_em_status,  # type: ignore[dict-item]
    "close_qtr": change_for_close_qtr,  # type: ignore[dict-item]
}


def change_for_intent(labels: Iterable[str], intent: Mapping[str, object]) -> LabelChange:
    """The labels to add and remove so that an issue with `labels` has what `intent` wants.

    Only the families the intent names are touched; a None value clears a family (not the stage).
    Run against the labels an issue has at delivery, so a label someone added meanwhile survives.
    """
    current = list(labels)
    change = LabelChange()
    for family, build in _INTENT_CHANGES.items():
        if family in intent:
            change = change | build(current, intent[family])
    return change
