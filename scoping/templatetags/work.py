"""The lists of "My work" rendered in Python: four of them with up to 25 rows each, and the template
engine's per-item cost (URL reversing, date filters, an include per list) was most of the page's time.
Every value from outside is escaped here; the rest is fixed markup."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django import template
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from opportunities.templatetags.outside import outside_link
from scoping.templatetags.board import iid_url
from scoping.workspace import ClosingOpportunity, WorkItem

register = template.Library()

_OVERDUE = '<span class="tag overdue-tag">overdue</span>'


@register.simple_tag(takes_context=True)
def work_issues(
    context, items: list[WorkItem], *, empty: str, show_age: bool = False, show_stale: bool = False
) -> SafeString:
    """A "My work" list: each issue linked to its page with its account, stage and, as asked, when it was
    created (marked overdue after the first-touch target) or when it goes stale; `empty` when there is none."""
    detail, zone, overdue_before = iid_url("scoping:issue-detail"), timezone.get_current_timezone(), None
    if show_age:
        overdue_before = context["overdue_before"]
    lines = []
    for item in items:
        facts = [escape(item.place)] if item.place else []
        facts.append(escape(item.stage_label))
        if show_age:
            facts[-1] += f" · created {item.created_at.astimezone(zone):%Y-%m-%d}"
        if show_stale:
            facts[-1] += f" · goes stale {item.goes_stale_at.astimezone(zone):%Y-%m-%d}"
        overdue = _OVERDUE if show_age and item.created_at < overdue_before else ""
        lines.append(
            f'  <li><a href="{detail.format(iid=item.iid)}">#{item.iid}</a> {escape(item.title)}\n'
            f'    <span class="muted">{" · ".join(facts)}</span>\n    {overdue}\n  </li>'
        )
    if not lines:
        lines.append(f'  <li class="muted">{escape(empty)}</li>')
    return mark_safe('<ul class="work-list">\n' + "\n".join(lines) + "\n</ul>")


@register.simple_tag
def closing_opportunities(opportunities: list[ClosingOpportunity]) -> SafeString:
    """Grey or Red opportunities closing soon: confidence, name (linked to Salesforce), account, close date
    and PS amount."""
    lines = [
        f'<li><span class="tag confidence-{escape(o.em_confidence.lower())}">{escape(o.em_confidence)}</span> '
        f"{outside_link(o.salesforce_url, o.name)} "
        f'<span class="muted">{escape(o.account_name or "")} · closes {o.close_date:%Y-%m-%d} · '
        f"{_whole_amount(o.ps_amount)}</span></li>"
        for o in opportunities
    ]
    return mark_safe(
        "\n".join(lines) or '<li class="muted">No Grey or Red opportunity closes in the next 30 days.</li>'
    )


def _whole_amount(value: Decimal | None) -> str:
    """An amount in whole units (half up) with thousands separators, as floatformat:0 and intcomma show it
    in English, for a twentieth of their cost; "—" for none."""
    if value is None:
        return "—"
    return f"{value.quantize(Decimal(1), rounding=ROUND_HALF_UP) + 0:,}"  # + 0: no "-0"
