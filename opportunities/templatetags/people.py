"""The one engagement-manager <select> (templates/includes/_em_select.html), built in Python: pages show it
with every EM as an option, and looping over them in the template cost more than the rest of a small page."""

from __future__ import annotations

from collections.abc import Iterable

from django import template
from django.db.models import QuerySet
from django.utils.safestring import SafeString

from opportunities.models import EngagementManager
from psplan.widgets import select_html

register = template.Library()


@register.simple_tag
def engagement_manager_select(
    engagement_managers: Iterable[EngagementManager],
    selected: object,
    *,
    name: str,
    everyone: str,
    everyone_value: str,
) -> SafeString:
    """People by name, GitLab usernames as values; `selected` matches a username in any case, and the
    "everyone" option is chosen when nothing (or `everyone_value`) is."""
    people = (
        tuple(engagement_managers.values_list("gitlab_username", "name"))
        if isinstance(engagement_managers, QuerySet)
        else tuple((em.gitlab_username, em.name) for em in engagement_managers)
    )
    wanted = str(selected or "")
    chosen = next((username for username, _name in people if username.lower() == wanted.lower()), None)
    if chosen is None and wanted in ("", everyone_value):
        chosen = everyone_value
    return select_html(name, ((everyone_value, everyone), *people), chosen or "")
