"""Board cards rendered in Python: a board shows up to ~300 of them, and the template engine's per-card
cost (URL reversing, filters, lookups) made the board several times slower than the rows it shows."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from html import escape
from urllib.parse import urlencode

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from opportunities.templatetags.write_state import write_badge
from scoping.choices import EMStatus
from scoping.workspace import Card, Column

register = template.Library()


@dataclass(frozen=True)
class _Links:
    """URL patterns reversed once per board, filled in per card."""

    detail: str
    move: str
    em_status: str
    issue_list: str


def iid_url(name: str) -> str:
    """A URL pattern taking an issue's iid, reversed once, with `{iid}` to fill in per issue."""
    return reverse(name, args=[987654321]).replace("987654321", "{iid}")


@lru_cache(maxsize=64)
def _links(board_query: str) -> _Links:
    return _Links(
        detail=iid_url("scoping:issue-detail"),
        move=f"{iid_url('scoping:move-issue')}?{board_query}",
        em_status=f"{iid_url('scoping:set-em-status')}?{board_query}",
        issue_list=reverse("scoping:issue-list"),
    )


@register.simple_tag(takes_context=True)
def board_column(context, column: Column, engagement_manager=None) -> SafeString:
    """A column: collapsed when empty or closed (it still takes a dropped card), capped, with "show more"."""
    cards = "".join(issue_card(context, card) for card in column.cards) or (
        '<p class="muted empty-column">Nothing here</p>'
    )
    closed_class, note = (
        (" closed-column", ' <small class="muted">last 90 days</small>') if column.closed else ("", "")
    )
    more = _show_more(column, engagement_manager, _links(context.get("board_query", "")))
    return mark_safe(
        f'<details class="column{closed_class}" data-drop-stage="{escape(column.stage.value)}"'
        f"{'' if column.collapsed else ' open'}><summary>"
        f'<span class="column-name">{escape(column.stage.label)}</span> '
        f'<span class="count-badge">{column.total}</span>{note}</summary>'
        f'<div class="cards-list">{cards}{more}</div></details>'
    )


def _show_more(column: Column, engagement_manager, links: _Links) -> str:
    if not column.hidden:
        return ""
    query = {"stage": column.stage.value}
    if engagement_manager is not None:
        query["engagement_manager"] = engagement_manager.gitlab_username
    if not column.closed:
        query["state"] = "opened"
    return f'<a class="show-more" href="{escape(links.issue_list)}?{escape(urlencode(query))}">Show {column.hidden} more</a>'


# Cards are written with f-strings and html.escape (what Django's escape calls): format_html's checks per value
# were a third of the board's time. Text from GitLab and Salesforce is escaped; the rest is fixed markup.
@register.simple_tag(takes_context=True)
def issue_card(context, issue: Card) -> SafeString:
    """One card: title, account, PS amount, EM confidence, days in stage, stale and write-back badges,
    and for editors the EM status toggle and the Move button."""
    links = _links(context.get("board_query", ""))
    can_edit = context.get("user_can_edit")
    iid = issue.iid
    state = " stale" if issue.stale_now else " going-stale" if issue.going_stale_now else ""
    draggable = f' draggable="true" data-move-url="{escape(links.move.format(iid=iid))}"' if can_edit else ""
    days = max(0, (context["now"] - issue.stage_entered_at).days)
    return mark_safe(
        f'<article class="card issue-card{state}" data-iid="{iid}" data-stage="{escape(issue.stage)}" '
        f'data-focus-key="card-{iid}"{draggable}>'
        f'<h3 class="card-title"><a href="{escape(links.detail.format(iid=iid))}">#{iid}</a> {escape(issue.title)}</h3>'
        f'<p class="card-line">{_opportunity_line(issue)}</p><p class="card-line muted">{days} d in stage'
        f"{_stale_tag(issue)}{write_badge(issue.write_state, issue.write_error, 'GitLab')}</p>"
        f'<div class="card-actions">{_actions(issue, links, can_edit)}</div></article>'
    )


def _opportunity_line(card: Card) -> str:
    if card.opportunity_name is None:
        return '<span class="muted">No opportunity</span>'
    amount = f" · {intcomma(int(card.ps_amount))}" if card.ps_amount is not None else ""
    confidence = escape(card.em_confidence)
    return (
        f"{escape(card.account_name or card.opportunity_name)}{escape(amount)} "
        f'<span class="tag confidence-{confidence.lower()}">{confidence}</span>'
    )


def _stale_tag(issue: Card) -> str:
    if issue.stale_now:
        return ' <span class="tag stale-tag">stale</span>'
    if issue.going_stale_now:
        return ' <span class="tag warn-tag">goes stale soon</span>'
    return ""


def _actions(issue: Card, links: _Links, can_edit: bool) -> str:
    status = EMStatus(issue.em_status) if issue.em_status else None
    label = status.label if status else "No status"
    css = f"em-status-{(status.value if status else 'none').lower()}"
    if not can_edit:
        return f'<span class="chip {css}">{label}</span>' if status else ""
    following = EMStatus.WAITING if status == EMStatus.TODO else EMStatus.TODO
    return (
        f'<button type="button" class="chip {css}" hx-post="{escape(links.em_status.format(iid=issue.iid))}" '
        f'hx-vals=\'{{"em_status": "{following.value}"}}\' hx-target="#board" '
        f'aria-label="EM status: {status.label if status else "none"}. Switch to {following.label}">{label}</button>'
        '<button type="button" class="chip" data-move-toggle data-focus-target aria-expanded="false" '
        'aria-controls="move-menu">Move</button>'
    )
