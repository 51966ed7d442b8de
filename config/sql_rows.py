"""Plain-SQL row writes for the store's hot path (one commit per step).

The ORM's per-query overhead was most of a step's cost; these build each statement once
per model and prepare values with the fields' own `get_db_prep_save`, so JSON, datetimes
and decimals are adapted exactly as the ORM would for SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections, models


@cache
def _insert_sql(model: type[models.Model], columns: tuple[str, ...]) -> tuple[str, tuple[models.Field, ...]]:
    fields = tuple(model._meta.get_field(name) for name in columns)
    quote = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        quote(model._meta.db_table), ", ".join(quote(f.column) for f in fields), ", ".join(["%s"] * len(fields))
    )
    return sql, fields


@cache
def _update_sql(model: type[models.Model], columns: tuple[str, ...], where: tuple[str, ...]) -> tuple[str, tuple[models.Field, ...]]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = tuple(meta.get_field(name) for name in columns)
    keys = tuple(meta.get_field(name) for name in where)
    sql = "UPDATE {} SET {} WHERE {}".format(
        quote(meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in fields),
        " AND ".join(f"{quote(k.column)} = %s" for k in keys),
    )
    return sql, fields + keys


# Fields whose values need adapting; plain text, numbers and booleans pass as they are.
_ADAPTED = (models.JSONField, models.DateTimeField, models.DecimalField)


class JSONText(str):
    """JSON already encoded (e.g. canonical text that was hashed): stored as is, not re-encoded."""


def _adapt_json_text(text: JSONText, conn: Any) -> Any:
    if conn.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        return Jsonb(None, dumps=lambda _: str(text))
    return str(text)


def _prep(conn: Any, fields: tuple[models.Field, ...], values: tuple[Any, ...],
          moments: dict[Any, Any] | None = None) -> list[Any]:
    """Values adapted for the driver of `conn` (this thread's connection itself, not the
    `connection` proxy, whose every attribute is a context-local lookup: at a few per value that
    was a twentieth of a busy worker's CPU). `moments`, shared across the rows of one statement:
    a commit stamps many rows with the same moment, adapted once."""
    moments = {} if moments is None else moments
    prepared = []
    for f, v in zip(fields, values, strict=True):
        if isinstance(v, JSONText):
            v = _adapt_json_text(v, conn)
        elif isinstance(f, models.DateTimeField) and v is not None:
            if v not in moments:
                moments[v] = f.get_db_prep_save(v, conn)
            v = moments[v]
        elif isinstance(f, _ADAPTED):
            v = f.get_db_prep_save(v, conn)
        prepared.append(v)
    return prepared


@cache
def _select_sql(model: type[models.Model], columns: tuple[str, ...], for_update: bool) -> tuple[str, tuple[models.Field, ...]]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = tuple(meta.get_field(name) for name in columns)
    sql = "SELECT {} FROM {} WHERE {} = %s".format(
        ", ".join(quote(f.column) for f in fields), quote(meta.db_table), quote(meta.pk.column))
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql, fields


@cache
def _qmark(sql: str) -> str:
    """`sql` with SQLite's placeholders, as Django's SQLite cursor rewrites it on every execute."""
    from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX

    return FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")


def _direct(conn: Any) -> Any:
    """On SQLite, the driver's own connection to run a hot-path statement on, or None.

    Django's cursor layers (a wrapper cursor per statement, its execute wrappers, the placeholder
    rewrite by regular expression) cost about as much per statement as SQLite's own work for a
    one-row write; these few statements are built here once, in SQLite's own placeholders. What
    Django's path adds is kept: database errors come as Django's (`wrap_database_errors`, which
    also marks the connection), a broken transaction refuses. Whenever queries are being logged
    (DEBUG, `CaptureQueriesContext`) or an execute wrapper is installed, Django's cursor is used."""
    if conn.vendor != "sqlite" or conn.queries_logged or conn.execute_wrappers or conn.connection is None:
        return None
    conn.validate_no_broken_transaction()
    return conn.connection


def select_row(model: type[models.Model], columns: tuple[str, ...], pk: Any, for_update: bool = False) -> dict[str, Any]:
    """One row by primary key as {attname: value}, locked on backends that can lock rows.

    Converts decimals and booleans (SQLite returns floats and ints); other values come as
    the driver gives them, so keep to plain columns.
    """
    sql, fields = _select_sql(model, columns, for_update)
    conn = connections[DEFAULT_DB_ALIAS]
    direct = _direct(conn)
    if direct is not None:
        with conn.wrap_database_errors:
            row = direct.execute(_qmark(sql), (pk,)).fetchone()
    else:
        with conn.cursor() as cursor:
            cursor.execute(sql, [pk])
            row = cursor.fetchone()
    if row is None:
        raise model.DoesNotExist(f"{model._meta.object_name} {pk} does not exist")
    return _converted(fields, row)


def ids_in(column: str, ids: Any) -> tuple[str, list[Any]]:
    """`column IN ids` for integer keys, as SQL and its parameters. On PostgreSQL the ids go as
    one array literal (`column = ANY(%s::bigint[])`): the driver renders one short string
    instead of a placeholder per id, which for the few hundred runs a worker holds cost a
    millisecond of parsing and rendering per query (18x less measured at 500 ids). Every id
    passes through `int`, so nothing but digits reaches the literal."""
    numbers = [int(i) for i in ids]
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s::bigint[])", ["{" + ",".join(map(str, numbers)) + "}"]
    if not numbers:
        return "1 = 0", []
    return f"{column} IN ({', '.join(['%s'] * len(numbers))})", numbers


def select_rows_by_pk(model: type[models.Model], columns: tuple[str, ...], pks: list[Any],
                      for_update: bool = False) -> dict[Any, dict[str, Any]]:
    """The rows of `pks` (integer keys) as {pk: {attname: value}} (converted as `select_row`
    does), read in one statement and, with `for_update` on backends that can, locked in
    primary-key order."""
    if not pks:
        return {}
    meta = model._meta
    quote = connection.ops.quote_name
    where, params = ids_in(quote(meta.pk.column), pks)
    sql = "SELECT {}, {} FROM {} WHERE {} ORDER BY {}".format(
        quote(meta.pk.column), ", ".join(quote(meta.get_field(name).column) for name in columns), quote(meta.db_table),
        where, quote(meta.pk.column))
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    fields = tuple(meta.get_field(name) for name in columns)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0]: _converted(fields, row[1:]) for row in cursor.fetchall()}


def _converted(fields: tuple[models.Field, ...], row: Any) -> dict[str, Any]:
    values = {}
    for f, value in zip(fields, row, strict=True):
        if isinstance(f, models.DecimalField) and value is not None:
            value = Decimal(str(value))
        elif isinstance(f, models.BooleanField):
            value = bool(value)
        values[f.attname] = value
    return values


@cache
def _select_where_sql(model: type[models.Model], columns: tuple[str, ...], where: tuple[str, ...], not_equal: tuple[str, ...],
                      for_update: bool) -> tuple[str, tuple[models.Field, ...]]:
    meta = model._meta
    quote = connection.ops.quote_name
    fields = tuple(meta.get_field(name) for name in columns)
    conditions = [f"{quote(meta.get_field(name).column)} = %s" for name in where]
    conditions += [f"{quote(meta.get_field(name).column)} <> %s" for name in not_equal]
    sql = "SELECT {} FROM {} WHERE {}".format(
        ", ".join(quote(f.column) for f in fields), quote(meta.db_table), " AND ".join(conditions))
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql, fields


def select_rows(model: type[models.Model], columns: tuple[str, ...], where: dict[str, Any],
                not_equal: dict[str, Any] | None = None, for_update: bool = False) -> list[tuple[Any, ...]]:
    """The rows matching `where` (equality on each column) and `not_equal` (inequality), as
    tuples of `columns`, locked on backends that can lock rows. Values come as the driver gives
    them (SQLite: JSON as text, decimals as floats): keep to plain columns or convert them."""
    not_equal = not_equal or {}
    sql, _ = _select_where_sql(model, columns, tuple(where), tuple(not_equal), for_update)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*where.values(), *not_equal.values()])
        return [tuple(row) for row in cursor.fetchall()]


def insert_rows(model: type[models.Model], rows: list[dict[str, Any]]) -> None:
    """INSERT rows that all name the same columns (keys starting with `_` are not columns)."""
    if not rows:
        return
    columns = tuple(k for k in rows[0] if not k.startswith("_"))
    sql, fields = _insert_sql(model, columns)
    conn = connections[DEFAULT_DB_ALIAS]
    moments: dict[Any, Any] = {}
    values = [_prep(conn, fields, tuple(row[c] for c in columns), moments) for row in rows]
    gathered = _gathering()
    if gathered is not None:  # one statement for all the rows, each row's values rendered on their own
        head, row_marks = sql[:sql.rindex("(")], sql[sql.rindex("("):]
        gathered.append(head + ", ".join(_render(row_marks, row) for row in values))
        return
    direct = _direct(conn)
    if direct is not None:
        with conn.wrap_database_errors:
            direct.executemany(_qmark(sql), values)
        return
    with conn.cursor() as cursor:
        cursor.executemany(sql, values)


def update_row(model: type[models.Model], values: dict[str, Any], where: dict[str, Any]) -> int:
    """UPDATE the rows matching `where` (equality on each column); returns the row count (-1
    inside `one_round_trip` on PostgreSQL, where the statement is only sent on leaving)."""
    sql, fields = _update_sql(model, tuple(values), tuple(where))
    conn = connections[DEFAULT_DB_ALIAS]
    params = _prep(conn, fields, (*values.values(), *where.values()))
    gathered = _gathering()
    if gathered is not None:
        gathered.append(_render(sql, params))
        return -1
    direct = _direct(conn)
    if direct is not None:
        with conn.wrap_database_errors:
            return direct.execute(_qmark(sql), params).rowcount
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


_gathered = threading.local()  # what `one_round_trip` holds on this (writer) thread


def sending_gathered() -> bool:
    """Whether the statement being executed on this thread is `one_round_trip`'s query (whose
    result nobody reads; what an execute wrapper may put more statements in front of)."""
    return getattr(_gathered, "sending", False)


def _gathering() -> list[str] | None:
    return getattr(_gathered, "statements", None)


def _render(sql: str, params: list[Any]) -> str:
    """The statement with its values as literals, by the driver's own client-side binding. Each
    statement (an insert's row) is rendered on its own: short texts, whose parse psycopg
    caches, where one long query would be parsed anew every time."""
    with connection.wrap_database_errors:  # a value the driver refuses (a NUL) fails as Django's error
        return _gathered.cursor.mogrify(sql, params)


@contextlib.contextmanager
def one_round_trip() -> Iterator[None]:
    """On PostgreSQL, hold the row writes made inside (`insert_rows`, one statement for all its
    rows, and `update_row`) and send them on leaving as one multi-statement query: a commit's
    writes cost one round trip and one wait, not one per statement or row. Django's psycopg
    cursors bind client-side, which is what lets one query carry several statements.

    Only for writes whose results nobody reads inside (`update_row` returns -1 there); an error
    surfaces on leaving, as Django's database error, and nothing is sent if the block raised.
    Elsewhere (SQLite: no round trips) the writes run one by one as they come."""
    if not one_query_capable() or _gathering() is not None:
        yield  # (server-side binding sends one statement per query)
        return
    statements: list[str] = []
    with connection.cursor() as cursor:
        _gathered.statements, _gathered.cursor = statements, cursor.cursor  # (the driver's own cursor renders)
        try:
            yield
        finally:
            _gathered.statements = _gathered.cursor = None
        if statements:
            _gathered.sending = True
            try:
                cursor.execute(";\n".join(statements))
            finally:
                _gathered.sending = False


def one_query_capable() -> bool:
    """Whether writes can go as one multi-statement query here (PostgreSQL with Django's
    client-side binding; server-side binding sends one statement per query)."""
    return connection.vendor == "postgresql" and not connection.settings_dict.get("OPTIONS", {}).get(
        "server_side_binding")


@contextlib.contextmanager
def guarded_round_trip(guard_sql: str, guard_params: list[Any],
                       then: list[tuple[str, list[Any]]] = ()) -> Iterator[list[tuple[Any, ...]]]:
    """PostgreSQL, outside any transaction: the guard statement, then the row writes made
    inside (`insert_rows`, `update_row`), sent on leaving as ONE multi-statement query.

    The server runs a multi-statement query as one implicit transaction, committed at its end:
    a whole commit — its row lock, writes and COMMIT — in one round trip, where `BEGIN`, a
    locking read, the writes and `COMMIT` take four. If any statement fails (the guard can fail
    on purpose, e.g. by dividing by a row count of zero), nothing of it is made; the error
    surfaces on leaving as Django's. The list yielded holds the guard's rows once it has left.

    `then`: statements (SQL, parameters) sent right after the guard, before the writes. Each
    statement of the query reads a snapshot taken when it starts, so a check that must see
    what was committed while the guard waited for its row lock goes here, not in the guard."""
    if not one_query_capable() or connection.in_atomic_block or _gathering() is not None:
        raise RuntimeError("guarded_round_trip: PostgreSQL with client-side binding, outside a transaction")
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        with connection.wrap_database_errors:
            statements = [cursor.cursor.mogrify(sql, params) for sql, params in ((guard_sql, guard_params), *then)]
        _gathered.statements, _gathered.cursor = statements, cursor.cursor
        try:
            yield rows
        finally:
            _gathered.statements = _gathered.cursor = None
        _gathered.sending = True
        try:
            cursor.execute(";\n".join(statements))
        finally:
            _gathered.sending = False
        rows.extend(tuple(row) for row in cursor.fetchall())  # (the first statement's result: the guard's)


def reads_in_one_query(statements: list[tuple[str, list[Any]]]) -> list[list[tuple[Any, ...]]]:
    """PostgreSQL, outside any transaction: `statements` (SQL and parameters each) sent as ONE
    multi-statement query, which the server runs as one implicit transaction, committed at its
    end (so a first statement may write, and the later ones read what it wrote); returns each
    statement's rows. If any statement fails, none of it is made; the error is Django's."""
    if not one_query_capable() or connection.in_atomic_block or _gathering() is not None:
        raise RuntimeError("reads_in_one_query: PostgreSQL with client-side binding, outside a transaction")
    with connection.cursor() as cursor:
        with connection.wrap_database_errors:
            query = ";\n".join(cursor.cursor.mogrify(sql, params) for sql, params in statements)
        cursor.execute(query)
        with connection.wrap_database_errors:
            results = [cursor.fetchall()]
            while cursor.cursor.nextset():
                results.append(cursor.cursor.fetchall())
    if len(results) != len(statements):
        raise RuntimeError(f"reads_in_one_query: {len(statements)} statements sent, {len(results)} results")
    return results
