"""The badge on a value that GitLab or Salesforce does not have yet: "sending…" or "not saved in …".

The reason (the other system's answer, or that the change simply waits its turn) sits in a disclosure: a
keyboard user opens it with Enter, a screen reader announces the badge as expandable, a mouse opens it with a
click, and nothing needs JavaScript.
"""

from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()

_WORDS = {"pending": "sending…", "failed": "not saved in {system}"}
_REASON_WHEN_QUIET = {
    "pending": "Saved in PS Plan; {system} gets it within a minute.",
    "failed": "{system} refused the change.",
}


@register.simple_tag
def write_badge(status: str | None, error: str | None, system: str) -> SafeString | str:
    """A badge for a pending or failed write, with its reason; nothing for a delivered one or none."""
    if status not in _WORDS:
        return ""
    reason = f"{system} answered: {error}" if error else _REASON_WHEN_QUIET[status].format(system=system)
    return format_html(
        '<details class="write-badge"><summary class="tag {}-tag">{}</summary>'
        '<span class="write-reason" role="note">{}</span></details>',
        status,
        _WORDS[status].format(system=system),
        reason,
    )


@register.simple_tag
def salesforce_write_state(status: str | None, error: str | None) -> SafeString:
    """How the opportunity's newest change fared: saved in Salesforce, still sending, or refused and why."""
    if status == "delivered":
        badge = SafeString('<span class="tag delivered-tag">saved in Salesforce</span>')
    else:
        badge = write_badge(status, error, "Salesforce")
    return format_html('<span class="write-state">{}</span>', badge)
