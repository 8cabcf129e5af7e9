"""CSV for pages and the API: the rows a table shows, safe to open in a spreadsheet.

Pages call `csv_response(filename=…, columns=…, rows=…)`. API views mix in `CSVAnswers`: `?format=csv`
or `Accept: text/csv` then gets the columns the view declares in `csv_columns` (or `csv_table(data)`
for a report whose JSON is not a plain list), else every key of the rows, nested objects as
`outer.inner`; errors stay JSON.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.http import StreamingHttpResponse
from rest_framework.renderers import BaseRenderer, JSONRenderer

# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"); tab and
# carriage return count too, because some spreadsheets strip them before looking.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
CONTENT_TYPE = "text/csv; charset=utf-8"


@dataclass(frozen=True)
class Column:
    """One CSV column: the key in each row and its header."""

    key: str
    label: str


def cell(value: Any) -> Any:
    """A value as a CSV cell: text a spreadsheet would run as a formula gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return f"{value:f}"  # never in exponent form (1E+3), which spreadsheets misread
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        value = "; ".join(str(item) for item in value)
    elif isinstance(value, dict):
        value = json.dumps(value, default=str)
    text = str(value)
    # A negative amount written as text ("-12.50", as the API writes money) is a number, not a formula.
    if text.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class _Line:
    """csv.writer writes into this and gets the line back, so rows stream instead of piling up."""

    def write(self, text: str) -> str:
        return text


def csv_lines(columns: Sequence[Column], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """The header, then one line per row, each value made safe by `cell`."""
    writer = csv.writer(_Line())
    yield writer.writerow([column.label for column in columns])
    for row in rows:
        yield writer.writerow([cell(row.get(column.key)) for column in columns])


def csv_response(
    *, filename: str, columns: Sequence[Column], rows: Iterable[Mapping[str, Any]]
) -> StreamingHttpResponse:
    """A download of `rows` as `filename`.csv."""
    response = StreamingHttpResponse(csv_lines(columns, rows), content_type=CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
    return response


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become `outer.inner` keys, so an API item is one CSV row."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def table_of(data: Any) -> tuple[list[Column], list[dict[str, Any]]]:
    """Columns and rows of an API answer: a page's `results`, a list, or one object (e.g. an error)."""
    if isinstance(data, Mapping) and isinstance(data.get("results"), list):
        data = data["results"]
    items = data if isinstance(data, list) else [data]
    rows = [flatten(item) if isinstance(item, Mapping) else {"value": item} for item in items]
    keys = list(dict.fromkeys(key for row in rows for key in row))
    # An object that is null on some rows (`write_back`) keeps the columns of its fields only.
    keys = [key for key in keys if not any(other.startswith(f"{key}.") for other in keys)]
    return [Column(key, key) for key in keys], rows


class CSVRenderer(BaseRenderer):
    """`?format=csv` or `Accept: text/csv` on a DRF view: the same rows and filters as its JSON."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        context = renderer_context or {}
        view, response, request = context.get("view"), context.get("response"), context.get("request")
        # The view's table is what GET answers; errors and OPTIONS (the endpoint's description) are
        # written as whatever they hold.
        own_table = (response is None or response.status_code < 400) and getattr(
            request, "method", "GET"
        ) == "GET"
        if own_table and hasattr(view, "csv_table"):
            columns, rows = view.csv_table(data)
        else:
            columns, rows = table_of(data)
            declared = getattr(view, "csv_columns", None)
            columns = list(declared) if declared and own_table else columns
        filename = getattr(view, "csv_filename", "")
        if response is not None and filename and own_table:
            response["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return "".join(csv_lines(columns, rows)).encode(self.charset)


class CSVAnswers:
    """Mixed into an API view: it also answers CSV, with the same rows and filters as its JSON."""

    renderer_classes = [JSONRenderer, CSVRenderer]

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # What went wrong is read the same way whatever format was asked: as JSON naming the field.
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return response
