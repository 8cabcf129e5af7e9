"""Querysets whose SQL is built once and run again with new values.

On the EM pages, Django's compiler cost as much as the database: 2.5 to 5 ms of each page went into writing
SQL whose text never changes, only the values in it. A PreparedRows writes the SQL of a values() or
values_list() queryset the first time it runs, finds which of its parameters each value is, and after that
only swaps the values in. The rows, converted as Django converts them, are the queryset's own.

Only for a queryset whose SQL text does not depend on the values (no `__in` list of them, no None that
turns into IS NULL, no slice by them): preparing compares the SQL built for two sets of example values and
refuses one that differs, or whose parameters are not the values themselves (as the database backend
adapts them: SQLite, under bin/run, takes dates and times as text). A None passed later is SQL's NULL,
which equals nothing, where Django's filter(field=None) would have written IS NULL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet
from django.db.models.query import ValuesIterable, ValuesListIterable


class NotPreparable(ValueError):
    """The queryset's SQL changes with its values, or a parameter is computed from one."""


@dataclass(frozen=True)
class _Prepared:
    sql: str
    params: tuple[Any, ...]
    slots: dict[int, tuple[str, Callable[[Any], Any]]]  # parameter index → value's name, backend adapter
    converters: dict[int, tuple[list, Any]]
    names: tuple[str, ...] | None  # values(): the dicts' keys; values_list(): None, rows are tuples


class PreparedRows:
    """`build(**values)` returns the values() or values_list() queryset for those values, using each value
    as it is (not something computed from it); `examples` gives two different example values for each name,
    e.g. `engagement_manager=(1, 2)`. Call it with the values to get the queryset's rows as a list."""

    def __init__(self, build: Callable[..., QuerySet], **examples: tuple[Any, Any]):
        self._build = build
        self._examples = examples
        self._prepared: dict[str, _Prepared] = {}

    def __call__(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> list:
        if values.keys() != self._examples.keys():
            raise TypeError(f"{self._name} takes {sorted(self._examples)}, not {sorted(values)}")
        prepared = self._prepared.get(using) or self._prepare(using)
        params = list(prepared.params)
        for index, (name, adapt) in prepared.slots.items():
            params[index] = adapt(values[name])
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(prepared.sql, params)
            rows = cursor.fetchall()
        if prepared.converters:
            rows = [_converted(row, prepared.converters, connection) for row in rows]
        if prepared.names is None:
            return rows
        return [dict(zip(prepared.names, row, strict=True)) for row in rows]

    @property
    def _name(self) -> str:
        return getattr(self._build, "__qualname__", repr(self._build))

    def _prepare(self, using: str) -> _Prepared:
        first = self._build(**{name: one for name, (one, _) in self._examples.items()})
        second = self._build(**{name: two for name, (_, two) in self._examples.items()})
        if first._iterable_class not in (ValuesIterable, ValuesListIterable):
            raise NotPreparable(f"{self._name} must build a values() or values_list() queryset")
        compiler = first.query.get_compiler(using)
        sql, params = compiler.as_sql()
        other_sql, other_params = second.query.get_compiler(using).as_sql()
        if other_sql != sql or len(other_params) != len(params):
            raise NotPreparable(f"{self._name}: the SQL changes with the values")
        operations = connections[using].ops
        adapters = (_as_it_is, operations.adapt_datetimefield_value, operations.adapt_datefield_value)
        slots = {}
        for index, (one, two) in enumerate(zip(params, other_params, strict=True)):
            if one == two:
                continue
            found = [
                (name, adapt)
                for name, (a, b) in self._examples.items()
                if (adapt := _adapter(adapters, a, b, one, two)) is not None
            ]
            if len(found) != 1:
                raise NotPreparable(f"{self._name}: parameter {index} is not one of the values as it is")
            slots[index] = found[0]
        if unused := self._examples.keys() - {name for name, _adapt in slots.values()}:
            raise NotPreparable(f"{self._name}: the SQL does not take {sorted(unused)}")
        columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
        prepared = _Prepared(
            sql=sql,
            params=tuple(params),
            slots=slots,
            converters=compiler.get_converters(columns),
            names=_names(first.query) if first._iterable_class is ValuesIterable else None,
        )
        self._prepared[using] = prepared
        return prepared


def _as_it_is(value: Any) -> Any:
    return value


def _adapter(adapters, example: Any, other_example: Any, param: Any, other_param: Any) -> Callable | None:
    """The first of the backend's adapters that made the two examples into the two parameters, if any."""
    for adapt in adapters:
        try:
            if adapt(example) == param and adapt(other_example) == other_param:
                return adapt
        except (TypeError, ValueError, AttributeError):  # a date or time adapter given another type
            continue
    return None


def _names(query) -> tuple[str, ...]:
    """The keys of values() rows, as ValuesIterable names them."""
    if query.selected:
        return tuple(query.selected)
    return (*query.extra_select, *query.values_select, *query.annotation_select)


def _converted(row: tuple, converters: dict[int, tuple[list, Any]], connection) -> tuple:
    """The row as Django's compiler converts it (SQLCompiler.apply_converters)."""
    values = list(row)
    for index, (functions, expression) in converters.items():
        value = values[index]
        for function in functions:
            value = function(value, expression, connection)
        values[index] = value
    return tuple(values)
