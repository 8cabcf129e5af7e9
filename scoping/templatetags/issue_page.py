"""The issue page's history rendered in Python: a busy issue has hundreds of timeline entries, and the template
engine's per-entry cost (two date filters, slugify, conditionals) was most of the page's rendering time.
Every value from outside is escaped here; the rest is fixed markup."""

from __future__ import annotations

from django import template
from django.template.defaultfilters import linebreaksbr, slugify
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from opportunities.templatetags.write_state import write_badge
from psplan.queue import WriteStatus
from scoping.choices import Stage
from scoping.history import StageSpan, TimelineEntry

register = template.Library()

_STAGE_NAMES = {
    stage: f'<span class="stage stage-{slugify(stage.value)}">{escape(stage.label)}</span>' for stage in Stage
}


@register.simple_tag
def stage_spans(spans: list[StageSpan]) -> SafeString:
    """The <li> of each stage the issue went through: its name, days spent, "(now)" for the current one."""
    return mark_safe("".join(_stage_span(span) for span in spans))


def _stage_span(span: StageSpan) -> str:
    days = span.duration.days
    now = "" if span.left_at else ' <span class="muted">(now)</span>'
    return f"<li>{_STAGE_NAMES[span.stage]} {days} day{'' if days == 1 else 's'}{now}</li>"


@register.simple_tag
def timeline_entries(entries: list[TimelineEntry]) -> SafeString:
    """The <li> of each change: when (local time), who, what, the write-back's state and the note."""
    zone = timezone.get_current_timezone()
    return mark_safe("\n".join(_timeline_entry(entry, zone) for entry in entries))


def _timeline_entry(entry: TimelineEntry, zone) -> str:
    when = entry.when.astimezone(zone)
    if entry.write_status == WriteStatus.DELIVERED:
        write = f' <span class="tag delivered-tag">in {entry.system}</span>'
    else:
        write = f" {write_badge(entry.write_status, entry.write_error, entry.system)}"
    note = f'<div class="note">{linebreaksbr(entry.note, autoescape=True)}</div>' if entry.note else ""
    return (
        f'<li><time datetime="{when.isoformat()}">{when:%Y-%m-%d %H:%M}</time> · '
        f"<strong>{escape(entry.who)}</strong>: {escape(entry.what)}{write}{note}</li>"
    )
