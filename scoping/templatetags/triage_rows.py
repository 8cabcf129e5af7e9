"""Triage rows rendered in Python: a page shows 25 of them, each with two selects and a form, and the template
engine's per-row cost (an include, URL reversing, filters) was most of the page's rendering time. Every
value from outside is escaped here; the rest is fixed markup."""

from __future__ import annotations

from functools import lru_cache

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from scoping.templatetags.board import iid_url
from scoping.workspace import TriageRow

register = template.Library()

_PUBLIC_SECTOR = ' <span class="tag pubsec">Public Sector US</span>'
_OVERDUE = ' <span class="tag overdue-tag">overdue</span>'
_READ_ONLY = '<span class="muted">Read only</span>'


@lru_cache(maxsize=1)
def _urls() -> tuple[str, str]:
    return iid_url("scoping:issue-detail"), iid_url("scoping:triage-issue")


@register.simple_tag(takes_context=True)
def triage_row(context, row: TriageRow) -> SafeString:
    """One row: the issue, its age, account and territory, the suggestion with why and the candidates' load,
    and for editors a checkbox and the Segment / Engagement manager form preselected with the suggestion."""
    issue, can_edit = row.issue, context.get("user_can_edit")
    detail, triage = (url.format(iid=issue.iid) for url in _urls())
    checkbox = (
        f'<td><input type="checkbox" name="iid" value="{issue.iid}" form="bulk-triage" '
        f'aria-label="Select #{issue.iid}"></td>'
        if can_edit
        else ""
    )
    title = escape(issue.title) + (_PUBLIC_SECTOR if issue.public_sector else "")
    age = escape(row.age) + (_OVERDUE if row.overdue else "")
    form = _form(context.get("csrf_token"), row, triage) if can_edit else _READ_ONLY
    return mark_safe(
        f'<tr id="triage-{issue.iid}" data-focus-key="triage-{issue.iid}">\n  {checkbox}\n'
        f'  <td><a href="{detail}">#{issue.iid}</a></td>\n  <td>{title}</td>\n  <td>{age}</td>\n'
        f"  <td>{_account(row)}</td>\n  <td>{_suggestion(row)}</td>\n  <td>{form}</td>\n</tr>"
    )


def _account(row: TriageRow) -> str:
    issue = row.issue
    if issue.account_name is None:
        return '<span class="muted">No opportunity linked</span>'
    territory = escape(issue.sales_territory or "no territory")
    return f'{escape(issue.account_name)}<br><small class="muted">{territory}</small>'


def _suggestion(row: TriageRow) -> str:
    suggestion = row.suggestion
    em = suggestion.engagement_manager
    who = f"<strong>{escape(em.name)}</strong>" if em else "—"
    load = suggestion.load_text
    load = f'<br><small class="muted">Open load: {escape(load)}</small>' if load else ""
    return f'{who}<br><small class="muted">{escape(suggestion.reason)}</small>{load}'


def _form(csrf_token: object, row: TriageRow, action: str) -> str:
    iid = row.issue.iid
    csrf = (
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{escape(csrf_token)}">'
        if csrf_token and csrf_token != "NOTPROVIDED"
        else ""
    )
    errors = f'<div class="error" role="alert">{escape(" ".join(row.errors))}</div>' if row.errors else ""
    return (
        f'\n    <form method="post" action="{action}" hx-post="{action}" hx-target="#triage-{iid}" '
        f'hx-swap="outerHTML" class="inline-form">\n      {csrf}\n'
        f"      <label>Segment {row.segment_select}</label>\n"
        f"      <label>Engagement manager {row.engagement_manager_select}</label>\n"
        f'      <button type="submit" data-focus-target>Triage</button>\n      {errors}\n    </form>\n  '
    )
