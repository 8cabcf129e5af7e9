"""Finding the other side of a link: opportunity ids in issue text, issue iids in opportunity links."""

from __future__ import annotations

import re

# Salesforce ids are 15 (case-sensitive) or 18 characters; opportunities start with 006.
_OPPORTUNITY_ID = re.compile(r"(?<![A-Za-z0-9])(006[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?)(?![A-Za-z0-9])")
_ISSUE_PATH = re.compile(r"/(?:-/)?(?:issues|work_items)/(\d+)(?:[/?#]|$)")


def opportunity_ids_in(text: str) -> list[str]:
    """Opportunity ids (from URLs or bare) in the order they appear, without repeats."""
    return list(dict.fromkeys(_OPPORTUNITY_ID.findall(text or "")))


def issue_iid_in(url: str) -> int | None:
    """The issue iid of a GitLab issue URL in any form (`/-/issues/N`, `/-/work_items/N`, `/issues/N`)."""
    match = _ISSUE_PATH.search(url or "")
    return int(match.group(1)) if match else None


def same_salesforce_id(a: str, b: str) -> bool:
    """15- and 18-character forms of one id agree on their first 15 characters."""
    return bool(a and b) and a[:15] == b[:15]
