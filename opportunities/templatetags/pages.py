"""Small formatting helpers the pages share."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def days_since(moment: datetime | None, now: datetime | None = None) -> int | str:
    """Whole days from `moment` to `now`: "days in stage" on a card."""
    if moment is None:
        return ""
    return max(0, ((now or timezone.now()) - moment).days)
