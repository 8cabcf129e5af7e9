"""No address answers 500, whatever bytes are in a path segment or a query parameter.

Every URL pattern is walked from the resolver; each path parameter and each query parameter — every
filter of every FilterSet, the pagers, and every filter the admin's changelists offer — gets odd values
in turn, as a signed-in admin (who can reach every page). bin/test runs this on PostgreSQL, which refuses
NUL bytes in text outright.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator

import django_filters
import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern

from tests.factories import EngagementManagerFactory, OpportunityFactory, ScopingIssueFactory

# Percent-encoded as a client would send them. In a query these never reach a view: the guard answers
# 400. In a path Django already turns bytes that are not UTF-8 back into %XX, so only NUL and length matter.
REFUSED = {
    "nul byte": "a%00b",
    "lone surrogate": "%ED%A0%80",
    "invalid utf-8": "%FF%FEx",
    "over-long": "x" * 5000,
}
# These reach views, filters and the database, which must answer them without a 500.
ODD = {
    "superscript two": "%C2%B2",
    "arabic-indic three": "%D9%A3",
    "huge number": "9" * 40,
    "long number": "9" * 1999,
    "negative": "-1",
    "quotes and markup": "%27%22%3Cb%3E%E2%80%AE",
    "empty": "",
}
# Parameters every list may read besides its FilterSet's.
COMMON_PARAMETERS = {"page", "page_size", "format", "search", "q", "next", "kind", "group_by", "sso"}
# What the admin's changelists read besides their sidebar filters, and what its other pages read.
CHANGELIST_PARAMETERS = {"q", "o", "p", "all", "_to_field", "_popup", "e"}
ADMIN_PAGE_PARAMETERS = {"_to_field", "_popup", "_changelist_filters", "next"}
_PLACEHOLDER = re.compile(r"<(?:(?P<converter>\w+):)?(?P<name>\w+)>|\(\?P<(?P<group>\w+)>[^)]*\)")


def _url_patterns(resolver=None, prefix: str = "") -> Iterator[tuple[str, dict[str, str]]]:
    """(route with `{name}` slots, name → converter) for every URL pattern, admin and API included."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        pattern = prefix + (
            str(entry.pattern) if isinstance(entry.pattern, RoutePattern) else entry.pattern.regex.pattern
        )
        if isinstance(entry, URLResolver):
            yield from _url_patterns(entry, pattern)
        elif isinstance(entry, URLPattern):
            yield _slots(pattern)


def _slots(pattern: str) -> tuple[str, dict[str, str]]:
    converters: dict[str, str] = {}

    def slot(match: re.Match) -> str:
        name = match["name"] or match["group"]
        converters[name] = match["converter"] or "str"
        return "{" + name + "}"

    route = _PLACEHOLDER.sub(slot, pattern)
    for literal in ("^", "$", "\\Z", "\\"):
        route = route.replace(literal, "")
    return "/" + route, converters


PATTERNS = sorted(set((route, tuple(sorted(converters.items()))) for route, converters in _url_patterns()))


def _filter_names() -> set[str]:
    """Every filter of every FilterSet."""
    names: set[str] = set()
    pending = [django_filters.FilterSet]
    while pending:
        filterset = pending.pop()
        names |= set(filterset.base_filters)
        pending += filterset.__subclasses__()
    return names


def _parameters_for(route: str) -> set[str]:
    """What a page may read: the filters of the FilterSets its view's module uses, and the common ones."""
    view = resolve(route).func
    view = getattr(view, "cls", None) or getattr(view, "view_class", None) or inspect.unwrap(view)
    module = sys.modules[view.__module__]
    filtersets = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, django_filters.FilterSet)
    ]
    return COMMON_PARAMETERS.union(*(filterset.base_filters for filterset in filtersets))


def _sidebar_parameters(html: str) -> set[str]:
    """The parameter names of the filter links in an admin changelist's sidebar."""
    sidebar = html.partition('id="changelist-filter"')[2]
    return {
        name
        for query in re.findall(r'href="\?([^"]*)"', sidebar)
        for name in re.findall(r"(?:^|&amp;)([^=&]+)=", query)
    }


def _sample_path(route: str, converters: dict[str, str], odd_name: str = "", odd_value: str = "") -> str:
    values = {name: (odd_value if name == odd_name else "1") for name in converters}
    return route.format(**values)


@pytest.fixture
def some_records(db):
    em = EngagementManagerFactory(gitlab_username="praman")
    OpportunityFactory(salesforce_id="006000000000042AAA", engagement_manager=em)
    ScopingIssueFactory(iid=1, engagement_manager=em)


def _assert_no_server_error(client, url: str, *, refused: bool) -> None:
    response = client.get(url)
    assert response.status_code < 500, f"{url[:300]} answered {response.status_code}"
    if refused:
        assert response.status_code == 400, f"{url[:300]} answered {response.status_code}, not 400"


@pytest.mark.parametrize(("route", "converters"), [p for p in PATTERNS if p[1]], ids=lambda v: str(v)[:80])
def test_odd_path_segments_never_get_a_server_error(admin_client, some_records, route, converters):
    converters = dict(converters)
    for name, converter in converters.items():
        for value_name, value in {**REFUSED, **ODD}.items():
            if converter == "int" and not value.isdecimal():
                continue  # such a segment cannot match an int converter: the resolver answers 404
            url = _sample_path(route, converters, name, value)
            refused = value_name == "nul byte" or len(url) > 2000
            _assert_no_server_error(admin_client, url, refused=refused)


@pytest.mark.parametrize(
    ("route", "converters"), [p for p in PATTERNS if not p[1]], ids=lambda v: str(v)[:80]
)
def test_odd_query_parameters_never_get_a_server_error(admin_client, some_records, route, converters):
    parameters = _parameters_for(route)
    if route.startswith("/admin/"):
        changelist = resolve(route).url_name.endswith("_changelist")
        parameters = ADMIN_PAGE_PARAMETERS
        if changelist:
            parameters = CHANGELIST_PARAMETERS | _sidebar_parameters(admin_client.get(route).content.decode())
    for parameter in sorted(parameters):
        for value_name, value in {**REFUSED, **ODD}.items():
            _assert_no_server_error(
                admin_client, f"{route}?{parameter}={value}", refused=value_name in REFUSED
            )


def test_the_walk_reaches_pages_api_admin_changelists_and_their_filters(admin_client):
    routes = {route for route, _ in PATTERNS}
    assert {"/issues/", "/opportunities/{salesforce_id}/", "/api/v1/scoping-issues/{iid}/"} <= routes
    assert "/admin/scoping/scopingissue/" in routes
    assert {"stage", "engagement_manager", "em_confidence", "close_qtr"} <= _filter_names()
    covered = set().union(*(_parameters_for(route) for route, converters in PATTERNS if not converters))
    assert _filter_names() <= covered, "every filter of every FilterSet is thrown at some page"
    sidebar = _sidebar_parameters(admin_client.get("/admin/scoping/scopingissue/").content.decode())
    assert {"stage__exact", "segment__exact"} <= sidebar
