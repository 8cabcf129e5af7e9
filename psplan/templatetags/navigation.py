"""The main navigation, built once per kind of page and user: every page shows it, and a dozen URL
reversals and comparisons in the template were a fixed cost on each request."""

from __future__ import annotations

from functools import lru_cache

from django import template
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.safestring import SafeString, mark_safe

from psplan.permissions import engagement_manager_of

register = template.Library()

# (label, URL name, which page marks it current: a URL name, or "app:<name>" for every page of an app)
_LINKS = (
    ("Board", "scoping:board", "board"),
    ("Triage", "scoping:triage", "triage"),
    ("Scoping issues", "scoping:issue-list", "issue-list"),
    ("Opportunities", "opportunities:list", "app:opportunities"),
    ("Win rate", "reporting:win-rate", "win-rate"),
    ("Forecast", "reporting:forecast", "forecast"),
    ("Data quality", "reporting:data-quality", "data-quality"),
    ("Sync status", "scoping:sync-status", "sync-status"),
    ("API docs", "api-docs", None),
    ("API token", "api-token", "api-token"),
)


@register.simple_tag(takes_context=True)
def main_nav(context) -> SafeString:
    """The links of the main navigation; the current page's link carries aria-current."""
    request = context["request"]
    match = request.resolver_match
    return _nav(
        match.url_name if match else None,
        match.app_name if match else None,
        engagement_manager_of(request.user) is not None,
        bool(context.get("user_is_admin")),
        # What reverse() depends on, so that a cached navigation never points elsewhere.
        get_script_prefix(),
        get_urlconf(),
    )


@lru_cache(maxsize=256)
def _nav(
    url_name: str | None, app_name: str | None, has_work: bool, is_admin: bool, *_reverse_inputs: object
) -> SafeString:
    links = [_link(label, name, current, url_name, app_name) for label, name, current in _LINKS]
    if has_work:
        links.insert(0, _link("My work", "scoping:my-work", "my-work", url_name, app_name))
    if is_admin:
        links.append(_link("Audit", "reporting:audit-trail", "audit-trail", url_name, app_name))
        links.append(f'<a href="{reverse("admin:index")}">Admin</a>')
    return mark_safe("\n      ".join(links))


def _link(label: str, name: str, current: str | None, url_name: str | None, app_name: str | None) -> str:
    if current is None:
        return f'<a href="{reverse(name)}">{label}</a>'
    here = current == (f"app:{app_name}" if current.startswith("app:") else url_name)
    return f'<a href="{reverse(name)}" {_CURRENT if here else ""}>{label}</a>'


_CURRENT = 'aria-current="page"'
