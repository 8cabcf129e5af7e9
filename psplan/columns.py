"""A table's columns declared once: the `values()` its rows come from, the API item and its OpenAPI schema,
the CSV and the HTML table all follow from one tuple of Columns.

A column reads one or more values from the row (`reads`: alias → field lookup or expression) and turns them into
what the API shows (`value`). Rows are plain dicts from one query, so a page of items costs one query however
many columns there are, and building an item is a dict comprehension over precomputed functions. A page's
HTML table is some of those columns, headed by their labels, its cells drawn from the same API items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from operator import itemgetter
from typing import Any, NamedTuple

from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseBadRequest
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString
from django_filters import FilterSet
from rest_framework import serializers

from psplan import csv_export

Row = Mapping[str, Any]
# A download reads its rows this many at a time, so a whole table never sits in memory.
CSV_CHUNK_ROWS = 2000


def iso(value: date | datetime | None) -> str | None:
    """ISO 8601 as DRF writes it (UTC as `Z`)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def money(value: Decimal | None) -> str | None:
    """Decimals as exact strings, as DRF writes them; never in exponent form."""
    return None if value is None else f"{value:.2f}"


def or_none(value: Any) -> Any:
    """Empty text from the database is "not set" in the API."""
    return value or None


def text_cell(value: Any) -> SafeString:
    """A value as people read it in a table cell, escaped: "—" when not set, lists joined, yes or no."""
    if value is None or value == "" or value == []:
        return SafeString("—")
    if isinstance(value, bool):
        return SafeString("Yes" if value else "No")
    if isinstance(value, list | tuple):
        return conditional_escape(", ".join(map(str, value)))
    return conditional_escape(value)


@dataclass(frozen=True)
class Column:
    """One column: its API key, the header people read, its schema field, and how its value is read."""

    key: str
    label: str
    field: serializers.Field
    reads: Mapping[str, Any] | None = None
    value: Callable[[Row], Any] | None = None
    csv: Callable[[Any], Any] | None = None  # the CSV cell from the item's value; the value by default
    # The HTML cell from the whole API item (so it may show several values, e.g. a link and its text);
    # the item's value as text by default. It returns escaped HTML.
    cell: Callable[[Row], SafeString] | None = None

    @property
    def lookups(self) -> Mapping[str, Any]:
        """Row alias → what `values()` reads for it; a plain column reads the model field of its key."""
        return self.reads if self.reads is not None else {self.key: self.key}

    @property
    def read(self) -> Callable[[Row], Any]:
        return self.value or itemgetter(self.key)

    def html(self, item: Row) -> SafeString:
        return self.cell(item) if self.cell is not None else text_cell(item[self.key])


def column(
    key: str,
    label: str,
    field: serializers.Field,
    *,
    source: Any = None,
    present: Callable[[Any], Any] | None = None,
    cell: Callable[[Row], SafeString] | None = None,
) -> Column:
    """A column of one value: a model field (the key, or `source`), shown as is or through `present`."""
    alias = key if source is None else f"{key}_value"
    reads = None if source is None else {alias: source}
    if present is None:
        return Column(key, label, field, reads, None if source is None else itemgetter(alias), cell=cell)
    get = itemgetter(alias)
    return Column(key, label, field, reads, lambda row: present(get(row)), cell=cell)


class HtmlRow(NamedTuple):
    """One row of a page's table: the API item (for the row's own attributes) and its cells' HTML."""

    item: dict[str, Any]
    cells: list[SafeString]


@dataclass(frozen=True)
class HtmlTable:
    """Some of a table's columns as a page shows them: headed by their labels, cells drawn from API items."""

    table: Table
    columns: tuple[Column, ...]

    @property
    def headers(self) -> list[str]:
        return [column_.label for column_ in self.columns]

    def rows(self, rows: Iterable[Row]) -> list[HtmlRow]:
        """Rows read by the table (`Table.rows`, e.g. one page of them), each with its cells."""
        columns = self.columns
        return [HtmlRow(item, [column_.html(item) for column_ in columns]) for item in self.table.items(rows)]


@dataclass(frozen=True)
class Table:
    """The columns of one kind of row, in order, and what follows from them."""

    name: str
    columns: tuple[Column, ...]
    prepare: Callable[..., QuerySet] | None = field(default=None, compare=False)

    def extended(self, name: str, columns: Iterable[Column]) -> Table:
        """This table with more columns (a detail view of the same rows)."""
        return Table(name, (*self.columns, *columns), self.prepare)

    def html(self, *keys: str) -> HtmlTable:
        """The HTML table of a page that shows these columns, in this order."""
        by_key = {column_.key: column_ for column_ in self.columns}
        unknown = [key for key in keys if key not in by_key]
        if unknown:
            raise ValueError(f"{self.name} has no column {', '.join(unknown)}")
        return HtmlTable(self, tuple(by_key[key] for key in keys))

    def rows(self, queryset: QuerySet, **context: Any) -> QuerySet:
        """The queryset's rows with every value the columns read, in one query."""
        if self.prepare is not None:
            queryset = self.prepare(queryset, **context)
        plain = [alias for alias, source in self._lookups.items() if alias == source]
        named = {alias: source for alias, source in self._lookups.items() if alias != source}
        return queryset.values(*plain, **named)

    def item(self, row: Row) -> dict[str, Any]:
        """The API item of one row."""
        return {key: read(row) for key, read in self._readers}

    def items(self, rows: Iterable[Row]) -> list[dict[str, Any]]:
        readers = self._readers
        return [{key: read(row) for key, read in readers} for row in rows]

    @property
    def labels(self) -> list[str]:
        return [column.label for column in self.columns]

    @property
    def keys(self) -> list[str]:
        return [column.key for column in self.columns]

    def csv_table(self, items: Iterable[Mapping[str, Any]]) -> tuple[list[csv_export.Column], Iterator[dict]]:
        """The CSV of API items: every column, headed by its label, one cell per value (rows made lazily)."""
        columns = [csv_export.Column(column.key, column.label) for column in self.columns]
        cells = [(column.key, column.csv) for column in self.columns if column.csv is not None]

        def rows() -> Iterator[dict]:
            for item in items:
                row = dict(item)
                for key, to_cell in cells:
                    row[key] = to_cell(row[key])
                yield row

        return columns, rows()

    def csv_download(self, filterset: FilterSet, *, filename: str, **context: Any) -> HttpResponse:
        """A page's table as the API writes it, every row its filters keep, streamed in chunks; a 400 naming
        the filter when one is invalid."""
        if not filterset.is_valid():
            return HttpResponseBadRequest(
                f"Cannot export: {filterset.errors.as_text()}", content_type="text/plain"
            )
        rows = self.rows(filterset.qs, **context).iterator(chunk_size=CSV_CHUNK_ROWS)
        columns, cells = self.csv_table(self.item(row) for row in rows)
        return csv_export.csv_response(filename=filename, columns=columns, rows=cells)

    @cached_property
    def serializer(self) -> type[serializers.Serializer]:
        """A DRF serializer with the columns' fields, for the OpenAPI schema; it writes items as `item` does."""
        table = self

        def to_representation(self, row: Row) -> dict[str, Any]:
            return table.item(row)

        attrs = {column_.key: column_.field for column_ in self.columns}
        attrs |= {"to_representation": to_representation, "__module__": __name__}
        return serializers.SerializerMetaclass(f"{self.name}Serializer", (serializers.Serializer,), attrs)

    @cached_property
    def _lookups(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for column_ in self.columns:
            merged.update(column_.lookups)
        return merged

    @cached_property
    def _readers(self) -> tuple[tuple[str, Callable[[Row], Any]], ...]:
        return tuple((column_.key, column_.read) for column_ in self.columns)
