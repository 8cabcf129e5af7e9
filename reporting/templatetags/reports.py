"""Report figures in templates: drill-down links, rates, amounts and quarters."""

from __future__ import annotations

import functools
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.urls import reverse
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import mark_safe

from psplan.fiscal import quarter_code
from reporting.charts import percent as _percent
from scoping.choices import ProblemKind, Stage

register = template.Library()
DECIDED = f"{Stage.CLOSED_WON},{Stage.CLOSED_LOST}"
NOTHING = mark_safe('<span class="muted">—</span>')

# Where a figure drills down to, and the context variable holding the page's own filters for it.
TARGETS = {
    "issues": ("scoping:issue-list", "issue_scope"),
    "opportunities": ("opportunities:list", "opportunity_scope"),
}


def _link(context, target: str, filters, text, extra: dict[str, str]) -> str:
    """`text` as a link to the list of what it counts: the page's filters, the figure's, and `extra`.

    No link when the list cannot select those records (`filters` is None) or there are none to see.
    """
    if filters is None or text in (0, "0", None, ""):
        return conditional_escape(text if text is not None else "")
    url_name, scope = TARGETS[target]
    query = {**dict(context.get(scope, ())), **dict(filters), **{k: v for k, v in extra.items() if v}}
    return format_html('<a href="{}?{}">{}</a>', _url(url_name), urlencode(query), text)


@functools.cache
def _url(name: str) -> str:
    return reverse(name)


@register.simple_tag(takes_context=True)
def drill(context, target: str, filters, text, **extra):
    return _link(context, target, filters, text, extra)


# The two figures repeated in every cell of a grid are built here rather than by an include each:
# a page of them renders in milliseconds instead of a second.


@register.simple_tag(takes_context=True)
def tally(context, figure):
    """A win-rate figure: the rate over "won - lost", each a link to the issues it counts."""
    rate = (
        "—"
        if figure.win_rate is None
        else _link(context, "issues", figure.filters, _percent(figure.win_rate), {"stage_in": DECIDED})
    )
    won = _link(context, "issues", figure.filters, figure.won, {"stage": Stage.CLOSED_WON})
    lost = _link(context, "issues", figure.filters, figure.lost, {"stage": Stage.CLOSED_LOST})
    return format_html(
        '<span class="rate">{}</span><span class="wl">{}<span class="sr-only"> won</span> \N{EN DASH} '
        '{}<span class="sr-only"> lost</span></span>',
        rate,
        won,
        lost,
    )


@register.simple_tag(takes_context=True)
def money(context, figure, filters, confidence=""):
    """A pipeline figure: the PS amount over the number of deals, a link to them when the list can
    select them."""
    if not figure.count:
        return NOTHING
    count = _link(context, "opportunities", filters, figure.count, {"em_confidence": confidence})
    return format_html(
        '<span class="amount">{}</span><span class="count">{} deal{}</span>',
        amount(figure.amount),
        count,
        "" if figure.count == 1 else "s",
    )


@register.filter
def percent(value: float | None) -> str:
    """A rate as a whole percentage; "—" when there is nothing to divide, never 0 %."""
    return _percent(value)


@register.filter
def amount(value: Decimal | None) -> str:
    """A PS amount in whole units of the currency (half up), with thousands separators."""
    return (
        "—" if value is None else intcomma(f"{Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP)}")
    )


@register.filter
def quarter_of(value: str | date | None) -> str:
    """The fiscal quarter of a date, or of one written as text (`2027-01-15`) in the history."""
    if not value:
        return ""
    try:
        day = value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        return ""
    return quarter_code(day)


_PROBLEM_LABELS = dict(ProblemKind.choices)
_STAGE_LABELS = dict(Stage.choices)


@register.filter
def stage_label(stage: str) -> str:
    return _STAGE_LABELS.get(stage, stage)


@register.filter
def problem_label(kind: str) -> str:
    return _PROBLEM_LABELS.get(kind, kind)
