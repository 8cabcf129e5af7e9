"""A table's columns declared once: the `values()` its rows come from, the API item and its OpenAPI schema,
the CSV and the HTML table's header all follow from one tuple of Columns.

A column reads one or more values from the row (`reads`: alias → field lookup or expression) and turns them into
what the API shows (`value`). Rows are plain dicts from one query, so a page of items costs one query however
many columns there are, and building an item is a dict comprehension over precomputed functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from operator import itemgetter
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseBadRequest
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


@dataclass(frozen=True)
class Column:
    """One column: its API key, the header people read, its schema field, and how its value is read."""

    key: str
    label: str
    field: serializers.Field
    reads: Mapping[str, Any] | None = None
    value: Callable[[Row], Any] | None = None
    csv: Callable[[Any], Any] | None = None  # the CSV cell from the item's value; the value by default

    @property
    def lookups(self) -> Mapping[str, Any]:
        """Row alias → what `values()` reads for it; a plain column reads the model field of its key."""
        return self.reads if self.reads is not None else {self.key: self.key}

    @property
    def read(self) -> Callable[[Row], Any]:
        return self.value or itemgetter(self.key)


def column(
    key: str,
    label: str,
    field: serializers.Field,
    *,
    source: Any = None,
    present: Callable[[Any], Any] | None = None,
) -> Column:
    """A column of one value: a model field (the key, or `source`), shown as is or through `present`."""
    alias = key if source is None else f"{key}_value"
    reads = None if source is None else {alias: source}
    if present is None:
        return Column(key, label, field, reads, None if source is None else itemgetter(alias))
    get = itemgetter(alias)
    return Column(key, label, field, reads, lambda row: present(get(row)))


@dataclass(frozen=True)
class Table:
    """The columns of one kind of row, in order, and what follows from them."""

    name: str
    columns: tuple[Column, ...]
    prepare: Callable[..., QuerySet] | None = field(default=None, compare=False)

    def extended(self, name: str, columns: Iterable[Column]) -> Table:
        """This table with more columns (a detail view of the same rows)."""
        return Table(name, (*self.columns, *columns), self.prepare)

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
