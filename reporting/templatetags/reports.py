"""Report figures in templates: drill-down links, rates, amounts and quarters."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.urls import reverse
from django.utils.html import format_html

from psplan.fiscal import quarter_code
from reporting.charts import percent as _percent
from scoping.choices import ProblemKind, Stage

register = template.Library()

# Where a figure drills down to, and the context variable holding the page's own filters for it.
TARGETS = {
    "issues": ("scoping:issue-list", "issue_scope"),
    "opportunities": ("opportunities:list", "opportunity_scope"),
}


@register.simple_tag(takes_context=True)
def drill(context, target: str, filters, text, **extra):
    """`text` as a link to the list of what it counts: the page's filters, the figure's, and `extra`.

    No link when the list cannot select those records (`filters` is None) or there are none to see.
    """
    if filters is None or text in (0, "0", None, ""):
        return text if text is not None else ""
    url_name, scope = TARGETS[target]
    query = {**dict(context.get(scope, ())), **dict(filters), **{k: v for k, v in extra.items() if v}}
    return format_html('<a href="{}?{}">{}</a>', reverse(url_name), urlencode(query), text)


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
