"""What every PS Plan API view shares: sign-in, throttling, pages, strict input fields and documented errors."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

from django.db.models import F, Func, IntegerField, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent, build_bearer_security_scheme_object
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.utils.urls import remove_query_param, replace_query_param

from psplan import counters
from psplan.authentication import TokenAuthentication
from psplan.pagination import StandardPagination
from psplan.permissions import ReadAnyWriteEngagementManager

_DIGITS = re.compile(r"[0-9]+")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MAX_PAGE = 10**9


class PerUserRateThrottle(SimpleRateThrottle):
    """One counter per signed-in user in fixed windows (psplan.counters).

    DRF's own throttles keep every request time in one cached list, which grows with the rate and is
    pickled on each request; a counter costs the same at any rate. With the default in-process cache the
    limit applies per server process; a shared cache makes it global.
    """

    scope = "user"

    def allow_request(self, request, view) -> bool:
        if self.rate is None or not request.user.is_authenticated:
            return True
        window = counters.hit(f"{self.scope}:{request.user.pk}", seconds=self.duration)
        self._retry_after = window.retry_after
        return window.count <= self.num_requests

    def wait(self) -> float:
        return self._retry_after


class FilterBackend(DjangoFilterBackend):
    """django-filter, skipped when no filter has a value: building and validating the form costs about a
    millisecond, and most calls ask for everything."""

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        if filterset_class is None or not any(
            request.query_params.get(name) for name in filterset_class.base_filters
        ):
            return queryset
        return super().filter_queryset(request, queryset, view)


class APIPagination(StandardPagination):
    """`{count, next, previous, results}` with strict page numbers; the limits are in the schema too.

    The total rides along in the page query as an uncorrelated subquery, which SQLite and PostgreSQL
    evaluate once, instead of costing a second query on every call. When no filter applies, the
    count's SQL is the same on every call, so it is compiled once per process.
    """

    last_page_strings = ()

    def paginate_rows(
        self, rows: QuerySet, *, counted: QuerySet, request, constant_key: str | None = None
    ) -> list[dict[str, Any]]:
        """One page of `rows` (a `.values()` queryset) and the number of records in `counted`.

        `constant_key` names a `counted` whose SQL never changes (no filter, nothing time-dependent).
        """
        self.request = request
        size = self.get_page_size(request)
        self.number = self.get_page_number(request, None)
        offset = (self.number - 1) * size
        total = _constant_count(counted, constant_key) if constant_key else _count_of(counted)
        page = list(rows.annotate(_total=total)[offset : offset + size])
        self.count = page[0]["_total"] if page else counted.count()
        if not page and self.number > 1:
            raise NotFound(self.invalid_page_message)
        self.has_next = offset + len(page) < self.count
        return page

    def get_page_number(self, request, paginator) -> int:
        raw = request.query_params.get(self.page_query_param) or "1"
        if not _DIGITS.fullmatch(raw) or not raw.strip("0"):
            raise ValidationError({self.page_query_param: ["Must be a whole number from 1."]})
        # Far past any last page, and an OFFSET this large overflows the database's integers.
        if len(raw.lstrip("0")) > len(str(_MAX_PAGE)) or int(raw) > _MAX_PAGE:
            raise NotFound(self.invalid_page_message)
        return int(raw)

    def get_paginated_response(self, data) -> Response:
        return Response(
            {
                "count": self.count,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_next_link(self) -> str | None:
        if not self.has_next:
            return None
        return replace_query_param(self.request.build_absolute_uri(), self.page_query_param, self.number + 1)

    def get_previous_link(self) -> str | None:
        if self.number == 1:
            return None
        url = self.request.build_absolute_uri()
        if self.number == 2:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, self.number - 1)

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size, default=self.page_size)
        return parameters


def _count_of(queryset: QuerySet) -> Subquery:
    # COUNT as a plain function, not an aggregate, so Django adds no GROUP BY to the subquery.
    counting = queryset.order_by().annotate(_n=Func(F("pk"), function="COUNT")).values("_n")
    return Subquery(counting, output_field=IntegerField())


_COUNT_SQL: dict[tuple[str, str], tuple[str, tuple]] = {}


def _constant_count(queryset: QuerySet, key: str) -> RawSQL:
    cache_key = (key, queryset.db)
    if cache_key not in _COUNT_SQL:
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        _COUNT_SQL[cache_key] = (f"SELECT COUNT(*) FROM ({sql}) counted", tuple(params))
    sql, params = _COUNT_SQL[cache_key]
    return RawSQL(sql, params, output_field=IntegerField())


# --- Input fields that refuse what the schema does not promise -----------------------------------


class StrictCharField(serializers.CharField):
    """Only JSON strings: DRF would quietly turn `12` or `1.5` into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictDateField(serializers.DateField):
    """Only `YYYY-MM-DD`: Python also reads `20261231` and week dates, which the schema's `date` does not."""

    def to_internal_value(self, value) -> date:
        if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
            self.fail("invalid", format="YYYY-MM-DD")
        return super().to_internal_value(value)


def field_errors(field: str, exc: Exception) -> ValidationError:
    """A service's refusal as a 400 that names the field the caller sent."""
    messages = getattr(exc, "messages", None) or [str(exc)]
    return ValidationError({field: list(messages)})


# --- OpenAPI: every status the API can answer is documented ---------------------------------------

_DETAIL_SCHEMA = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_VALIDATION_SCHEMA = {
    "type": "object",
    "description": "Field name → what is wrong with it (`detail` for a body that is not JSON).",
    "additionalProperties": {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
}
_ERRORS = {
    "400": ("Bad input: the body names each field and what is wrong with it", "ValidationError"),
    "401": ("Not signed in: send `Authorization: Token <key>` or a session cookie", "ErrorDetail"),
    "403": ("Signed in, but only engagement managers and admins may change data", "ErrorDetail"),
    "404": ("No such record (or no such page)", "ErrorDetail"),
    "406": ("The API answers JSON, and CSV where it lists rows or reports", "ErrorDetail"),
    "415": ("Send the body as application/json", "ErrorDetail"),
    "429": (
        "Too many requests for this user, or wrong tokens from this address; see Retry-After",
        "ErrorDetail",
    ),
}


class TokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Token <key>` in the schema, under the name DRF's own token scheme had."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")


class PSPlanAutoSchema(AutoSchema):
    """drf-spectacular plus the error answers DRF gives, so fuzzers can hold the API to its schema."""

    # Set by views whose GET returns one object but still takes FilterSet parameters (the reports).
    def get_filter_backends(self) -> list[Any]:
        if getattr(self.view, "filters_in_schema", False):
            return getattr(self.view, "filter_backends", [])
        return super().get_filter_backends()

    def get_operation(self, *args, **kwargs) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        for parameter in operation.get("parameters", []):
            # django-filter and the pager treat `?stage=` like no `stage` at all.
            if parameter["in"] == "query" and parameter["name"] != "page_size":
                parameter["allowEmptyValue"] = True
        for code in self._error_codes(operation):
            description, component = _ERRORS[code]
            operation["responses"].setdefault(
                code,
                {
                    "description": description,
                    "content": {"application/json": {"schema": self._ref(component)}},
                },
            )
        return operation

    def _error_codes(self, operation: dict[str, Any]) -> list[str]:
        codes = ["401", "406", "429"]
        if operation.get("parameters") and any(p["in"] == "query" for p in operation["parameters"]):
            codes.append("400")
        if "{" in self.path or self._is_list_view():
            codes.append("404")
        if self.method in ("PATCH", "PUT", "POST", "DELETE"):
            codes += ["400", "403", "415"]
        return sorted(set(codes))

    def _ref(self, name: str) -> dict[str, str]:
        schema = _VALIDATION_SCHEMA if name == "ValidationError" else _DETAIL_SCHEMA
        component = ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=schema)
        self.registry.register_on_missing(component)
        return component.ref


class JSONNegotiation(DefaultContentNegotiation):
    """JSON first: answer the Accept headers clients usually send without ranking media types."""

    def select_renderer(self, request, renderers, format_suffix=None):
        # `?format=csv` outranks the Accept header, as in DRF's own negotiation.
        asked_format = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        if not asked_format and request.META.get("HTTP_ACCEPT", "*/*") in ("*/*", "application/json", ""):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)

    def filter_renderers(self, renderers, format):
        """An unknown `?format=` is bad input (400 naming it), not a missing page as DRF answers."""
        chosen = [renderer for renderer in renderers if renderer.format == format]
        if not chosen:
            offered = ", ".join(renderer.format for renderer in renderers)
            raise ValidationError({self.settings.URL_FORMAT_OVERRIDE: [f"Use one of: {offered}."]})
        return chosen


class APIDefaults:
    """Mixed into every API view.

    Token authentication comes first because DRF takes the `WWW-Authenticate` challenge from the first
    class: with sessions first, an anonymous caller would get 403 instead of 401. `get_queryset` must
    not depend on the request or the clock: its unfiltered count is compiled once per process.
    """

    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [ReadAnyWriteEngagementManager]
    throttle_classes = [PerUserRateThrottle]
    pagination_class = APIPagination
    filter_backends = [FilterBackend]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONNegotiation
    schema = PSPlanAutoSchema()

    def paginate_rows(self, rows_for: Callable[[QuerySet], QuerySet]) -> list[dict[str, Any]]:
        """Filter the view's queryset, then one page of `rows_for(filtered)` and the filtered total."""
        base = self.get_queryset()
        chosen = self.filter_queryset(base)
        constant_key = type(self).__qualname__ if chosen is base else None
        return self.paginator.paginate_rows(
            rows_for(chosen), counted=chosen, request=self.request, constant_key=constant_key
        )
