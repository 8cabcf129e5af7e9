"""Template helpers for text and URLs that come from GitLab or Salesforce, which PS Plan treats as hostile."""

from __future__ import annotations

from urllib.parse import urlsplit

from django import template
from django.utils.html import format_html

register = template.Library()

WEB_SCHEMES = frozenset({"http", "https"})


def is_web_url(url: object) -> bool:
    """Only http and https URLs with a host may become links: `javascript:` or `data:` never do."""
    if not isinstance(url, str) or not url or url != url.strip():
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in WEB_SCHEMES and bool(parts.netloc)


@register.filter
def web_url(url: object) -> str:
    """The URL when it is safe to use in href, else an empty string."""
    return url if is_web_url(url) else ""  # type: ignore[return-value]


@register.simple_tag
def outside_link(url: object, text: object, prefix: str = "") -> str:
    """A link opening outside PS Plan when the URL is http(s); the escaped text alone otherwise."""
    if not is_web_url(url):
        return format_html("{}{}", prefix, text)
    return format_html('<a href="{}" target="_blank" rel="noopener noreferrer">{}{}</a>', url, prefix, text)
