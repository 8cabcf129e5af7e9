"""Board cards rendered in Python: a board shows up to ~300 of them, and the template engine's per-card
cost (URL reversing, filters, lookups) made the board several times slower than the rows it shows."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.urls import reverse
from django.utils.html import format_html
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
    cards = [issue_card(context, card) for card in column.cards] or [
        mark_safe('<p class="muted empty-column">Nothing here</p>')
    ]
    return format_html(
        '<details class="column{}" data-drop-stage="{}"{}><summary><span class="column-name">{}</span> '
        '<span class="count-badge">{}</span>{}</summary><div class="cards-list">{}{}</div></details>',
        " closed-column" if column.closed else "",
        column.stage.value,
        "" if column.collapsed else mark_safe(" open"),
        column.stage.label,
        column.total,
        mark_safe(' <small class="muted">last 90 days</small>') if column.closed else "",
        mark_safe("".join(cards)),
        _show_more(column, engagement_manager, _links(context.get("board_query", ""))),
    )


def _show_more(column: Column, engagement_manager, links: _Links) -> SafeString:
    if not column.hidden:
        return mark_safe("")
    query = {"stage": column.stage.value}
    if engagement_manager is not None:
        query["engagement_manager"] = engagement_manager.gitlab_username
    if not column.closed:
        query["state"] = "opened"
    return format_html(
        '<a class="show-more" href="{}?{}">Show {} more</a>',
        links.issue_list,
        urlencode(query),
        column.hidden,
    )


@register.simple_tag(takes_context=True)
def issue_card(context, issue: Card) -> SafeString:
    """One card: title, account, PS amount, EM confidence, days in stage, stale and write-back badges,
    and for editors the EM status toggle and the Move button."""
    links = _links(context.get("board_query", ""))
    can_edit = context.get("user_can_edit")
    state = " stale" if issue.stale_now else " going-stale" if issue.going_stale_now else ""
    draggable = (
        format_html(' draggable="true" data-move-url="{}"', links.move.format(iid=issue.iid))
        if can_edit
        else ""
    )
    return format_html(
        '<article class="card issue-card{}" data-iid="{}" data-stage="{}" data-focus-key="card-{}"{}>'
        '<h3 class="card-title"><a href="{}">#{}</a> {}</h3>'
        '<p class="card-line">{}</p><p class="card-line muted">{} d in stage{}{}</p>'
        '<div class="card-actions">{}</div></article>',
        state,
        issue.iid,
        issue.stage,
        issue.iid,
        draggable,
        links.detail.format(iid=issue.iid),
        issue.iid,
        issue.title,
        _opportunity_line(issue),
        max(0, (context["now"] - issue.stage_entered_at).days),
        _stale_tag(issue),
        write_badge(issue.write_state, issue.write_error, "GitLab"),
        _actions(issue, links, can_edit),
    )


def _opportunity_line(card: Card) -> SafeString:
    if card.opportunity_name is None:
        return mark_safe('<span class="muted">No opportunity</span>')
    return format_html(
        '{}{} <span class="tag confidence-{}">{}</span>',
        card.account_name or card.opportunity_name,
        f" · {intcomma(int(card.ps_amount))}" if card.ps_amount is not None else "",
        card.em_confidence.lower(),
        card.em_confidence,
    )


def _stale_tag(issue: Card) -> SafeString:
    if issue.stale_now:
        return mark_safe(' <span class="tag stale-tag">stale</span>')
    if issue.going_stale_now:
        return mark_safe(' <span class="tag warn-tag">goes stale soon</span>')
    return mark_safe("")


def _actions(issue: Card, links: _Links, can_edit: bool) -> SafeString:
    status = EMStatus(issue.em_status) if issue.em_status else None
    label = status.label if status else "No status"
    css = f"em-status-{(status.value if status else 'none').lower()}"
    if not can_edit:
        return format_html('<span class="chip {}">{}</span>', css, label) if status else mark_safe("")
    following = EMStatus.WAITING if status == EMStatus.TODO else EMStatus.TODO
    return format_html(
        '<button type="button" class="chip {}" hx-post="{}" hx-vals=\'{{"em_status": "{}"}}\' hx-target="#board" '
        'aria-label="EM status: {}. Switch to {}">{}</button>'
        '<button type="button" class="chip" data-move-toggle data-focus-target aria-expanded="false" '
        'aria-controls="move-menu">Move</button>',
        css,
        links.em_status.format(iid=issue.iid),
        following.value,
        status.label if status else "none",
        following.label,
        label,
    )
