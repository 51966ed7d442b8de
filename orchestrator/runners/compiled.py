"""Read queries whose SQL Django compiles once per shape, then runs again with new values.

Django compiles a queryset's SQL every time it runs. For the few reads a run's claim makes
(the runs with their versions and pipelines, which of them have steps, the teams' agents,
limits and model prices), compiling took more of the claim than the database did: on
PostgreSQL a lone run's claim spent ~1.3 of its ~3.9 ms building SQL. `CompiledRead` keeps,
per shape (how many values each list argument holds), the SQL and the compiler Django built
for it, and runs that SQL again with the new values. Rows are converted and models built by
the same compiler code the ORM runs (`results_iter`, `Model.from_db`, `select_related`'s
populators), so what comes back is what the queryset would have returned.

Values are put in place by position: a shape is compiled twice from distinct stand-in
values (the second set full of what escaping, case folding or trimming would change); the
SQL must be the same and each stand-in found unchanged, once, at the same place among the
parameters (the others are the query's constants, kept). Otherwise (a lookup that rewrites
values, a list used twice, extra select columns, annotations) that shape runs through the
ORM, as before, and so does a list holding None (the ORM drops it from `IN`). Compiled queries are kept per thread (a compiler holds
its thread's connection), at most `SHAPES_KEPT` per read.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import FlatValuesListIterable, ModelIterable, get_related_populators

log = logging.getLogger(__name__)

SHAPES_KEPT = 256
_INT_STAND_IN = -(10**15)


class _Shape:
    """One compiled query: its SQL, where each argument's values go, and how rows become models."""

    def __init__(self, build: Callable[..., QuerySet], sample: Sequence[Sequence[Any]]) -> None:
        first = [_stand_ins(index, values, 0) for index, values in enumerate(sample)]
        second = [_stand_ins(index, values, 1) for index, values in enumerate(sample)]
        queryset = build(*first)
        self.alias = queryset.db
        self.compiler = compiler = queryset.query.get_compiler(using=self.alias)
        self.sql, params = compiler.as_sql()
        self.params = list(params)
        # Rows of values come as selected; a model's annotations and related objects to attach,
        # and extra select columns to trim, are left to the ORM.
        if compiler.has_extra_select or (queryset._iterable_class is ModelIterable and compiler.annotation_col_map) or \
                queryset._known_related_objects or queryset._prefetch_related_lookups:
            raise LookupError("extra select columns, annotations or related objects to attach")
        # Compiled again from stand-ins that any rewriting of values (escaping for LIKE,
        # lower-casing, trimming) would change: the SQL must be the same and every stand-in of
        # both sets found unchanged, once, in the same place.
        sql, params_again = build(*second).query.get_compiler(using=self.alias).as_sql()
        if sql != self.sql:
            raise LookupError("the SQL depends on the values")
        self.slots = []
        for ones, others in zip(first, second, strict=True):
            slots = [_slot(self.params, value) for value in ones]
            if slots != [_slot(list(params_again), value) for value in others]:
                raise LookupError("the values do not keep their places")
            self.slots.append(slots)
        self.klass_info = compiler.klass_info
        if self.klass_info is not None:
            select_fields = self.klass_info["select_fields"]
            self.model_start, self.model_end = select_fields[0], select_fields[-1] + 1
            self.init_list = [f[0].target.attname for f in compiler.select[self.model_start:self.model_end]]

    def bound(self, arguments: Sequence[Sequence[Any]]) -> list[Any]:
        """The SQL's parameters with `arguments` in their places."""
        params = list(self.params)
        for slots, values in zip(self.slots, arguments, strict=True):
            for slot, value in zip(slots, values, strict=True):
                bound = self.params[slot]
                # Keep the driver's type where the backend wraps integers (psycopg's Int4/Int8).
                params[slot] = type(bound)(value) if type(bound) is not int and isinstance(bound, int) else value
        return params

    def rows(self, arguments: Sequence[Sequence[Any]]) -> Iterator[Any]:
        with connections[self.alias].cursor() as cursor:
            cursor.execute(self.sql, self.bound(arguments))
            fetched = cursor.fetchall()
        return self.converted(fetched)

    def converted(self, fetched: list[tuple[Any, ...]]) -> Iterator[Any]:
        """The rows the database sent, converted as the ORM converts them."""
        return self.compiler.results_iter([fetched])

    def models(self, arguments: Sequence[Sequence[Any]]) -> list[Model]:
        return self.models_of(self.rows(arguments))

    def models_of(self, rows: Iterator[Any]) -> list[Model]:
        assert self.klass_info is not None
        model, start, end, init_list = self.klass_info["model"], self.model_start, self.model_end, self.init_list
        populators = get_related_populators(self.klass_info, self.compiler.select, self.alias)
        found = []
        for row in rows:
            obj = model.from_db(self.alias, init_list, row[start:end])
            for populator in populators:
                populator.populate(row, obj)
            found.append(obj)
        return found


class CompiledRead:
    """A read built by `build(*lists)` (each argument a list of values), compiled once per shape.

    `models(*lists)` returns what `list(build(*lists))` would; `values(*lists)` what a
    `values_list` queryset's rows would (tuples). Pass each list without duplicates.
    """

    def __init__(self, name: str, build: Callable[..., QuerySet]) -> None:
        self.name = name
        self._build = build
        self._local = threading.local()
        self.compiled = 0  # shapes compiled, for tests
        self.executions = 0  # executions of compiled SQL
        self.fallbacks = 0  # executions that went through the ORM

    def models(self, *lists: Sequence[Any]) -> list[Model]:
        shape = self._shape(lists)
        if shape is None:
            self.fallbacks += 1
            return list(self._build(*lists))
        self.executions += 1
        return shape.models(lists)

    def values(self, *lists: Sequence[Any]) -> list[tuple[Any, ...]]:
        shape = self._shape(lists)
        if shape is None:
            self.fallbacks += 1
            queryset = self._build(*lists)
            if queryset._iterable_class is FlatValuesListIterable:
                return [(row,) for row in queryset]
            return [tuple(row) for row in queryset]
        self.executions += 1
        return [tuple(row) for row in shape.rows(lists)]

    def statement(self, *lists: Sequence[Any]) -> tuple[str, list[Any]] | None:
        """The SQL and parameters that `models(*lists)` or `values(*lists)` would send, for a caller
        that sends them itself (with other statements, in one query); None where this shape
        runs through the ORM. Hand what the database sent back to `models_from`/`values_from`."""
        shape = self._shape(lists)
        return None if shape is None else (shape.sql, shape.bound(lists))

    def models_from(self, fetched: list[tuple[Any, ...]], *lists: Sequence[Any]) -> list[Model]:
        """What `models(*lists)` returns, from the rows its `statement` fetched."""
        shape = self._shape(lists)
        assert shape is not None, "models_from: no statement for this shape"
        self.executions += 1
        return shape.models_of(shape.converted(fetched))

    def values_from(self, fetched: list[tuple[Any, ...]], *lists: Sequence[Any]) -> list[tuple[Any, ...]]:
        """What `values(*lists)` returns, from the rows its `statement` fetched."""
        shape = self._shape(lists)
        assert shape is not None, "values_from: no statement for this shape"
        self.executions += 1
        return [tuple(row) for row in shape.converted(fetched)]

    def _shape(self, lists: tuple[Sequence[Any], ...]) -> _Shape | None:
        if any(value is None for values in lists for value in values):
            return None  # the ORM drops None from IN lists (and may answer without asking)
        shapes: dict[tuple[Any, ...], _Shape | None] | None = getattr(self._local, "shapes", None)
        if shapes is None:
            shapes = self._local.shapes = {}
        key = tuple((len(values), type(values[0]).__name__ if values else "") for values in lists)
        if key in shapes:
            return shapes[key]
        if len(shapes) >= SHAPES_KEPT:
            shapes.clear()
        try:
            shape: _Shape | None = _Shape(self._build, lists)
            self.compiled += 1
        except EmptyResultSet:  # an empty list: the ORM answers without asking the database
            shape = None
        except LookupError as exc:  # this shape stays on the ORM
            log.warning("%s: the query for shape %s cannot be reused (%s); it runs through the ORM", self.name, key, exc)
            shape = None
        shapes[key] = shape
        return shape


def _stand_ins(index: int, values: Sequence[Any], variant: int) -> list[Any]:
    """As many distinct values as `values` holds, of its type, that no query constant will equal;
    variant 1's strings hold what escaping, case folding or trimming would change."""
    if values and isinstance(values[0], int) and not isinstance(values[0], bool):
        return [_INT_STAND_IN - variant * 10**12 - index * 100_000 - i for i in range(len(values))]
    if variant:
        return [f" \x00A_%\\'\"-stand-in-{index}-{i} " for i in range(len(values))]
    return [f"\x00agentdeck-stand-in-{index}-{i}" for i in range(len(values))]


def _slot(params: list[Any], value: Any) -> int:
    """The one position of `value` among `params` (the same type, or an int the driver wraps)."""
    found = [i for i, param in enumerate(params) if param == value and (
        type(param) is type(value) or (type(value) is int and isinstance(param, int) and not isinstance(param, bool)))]
    if len(found) != 1:
        raise LookupError(f"stand-in {value!r} is among the SQL's parameters {len(found)} times")
    return found[0]
