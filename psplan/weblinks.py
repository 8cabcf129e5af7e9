"""Which URLs from GitLab and Salesforce PS Plan keeps: a link a person may click must be http or https."""

from __future__ import annotations

from urllib.parse import urlsplit

WEB_SCHEMES = frozenset({"http", "https"})


def is_web_url(value: str) -> bool:
    """An absolute http(s) URL with a host; `javascript:`, `data:` and the like are not."""
    text = (value or "").strip()
    if not text or any(ord(char) < 32 for char in text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme.lower() in WEB_SCHEMES and bool(parts.netloc)


def web_url_or_empty(value: str) -> str:
    """The URL when it is safe to link to, else empty (the caller reports the refusal)."""
    return value.strip() if is_web_url(value) else ""
