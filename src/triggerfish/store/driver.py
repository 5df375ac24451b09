"""Statements sent straight to the driver connection, past SQLAlchemy's execution.

For the hottest statements: :func:`fetch_on_driver` and the helpers that put
values in the shape SQLAlchemy would have stored them.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine import Dialect as SQLDialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish import _otel
from triggerfish.store.dialects import postgresql, sqlite
from triggerfish.store.errors import DuplicateKey, NotLastStatement

#: characters of a statement's SQL its span keeps
STATEMENT_CHARS = 2000
#: the attribute that marks the span of a statement sent past SQLAlchemy
DRIVER_LEVEL = "triggerfish.db.driver_level"
#: engines whose driver-level statements get spans, and their ``db.system``
_TRACED: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()

#: ``Connection.info`` key: the transaction a lone ``fetch_on_driver`` statement
#: committed (weakly held), and that statement
_COMMITTED_ALONE = "triggerfish_committed_alone"


@functools.lru_cache(maxsize=64)
def bind_processors(
    table: Table, dialect: SQLDialect, columns: tuple[str, ...]
) -> list[tuple[int, Callable[[Any], Any]]]:
    """(position, bind processor) of those ``columns`` of ``table`` that have one.

    For values sent with :func:`fetch_on_driver`: run through these, they are
    stored exactly as SQLAlchemy stores them (JSON text, SQLite's datetime
    strings and booleans).
    """
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for i, name in enumerate(columns):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            out.append((i, process))
    return out


def stored_row(
    table: Table, dialect: SQLDialect, columns: tuple[str, ...], values: dict[str, Any]
) -> list[Any]:
    """``values`` of ``columns``, in order, as SQLAlchemy would send them (see
    :func:`bind_processors`): the parameters of a :func:`fetch_on_driver` statement."""
    row = [values[name] for name in columns]
    for i, process in bind_processors(table, dialect, columns):
        row[i] = process(row[i])
    return row


async def fetch_on_driver(
    conn: AsyncConnection, sql: str, params: Any, *, read_only: bool = False
) -> list[Any]:
    """Run one statement on the driver connection under ``conn``; its rows as tuples.

    For the hottest statements, in the driver's own parameter style (asyncpg:
    ``$1`` with a sequence, prepared once per connection; sqlite3: ``?`` with a
    sequence or ``:name`` with a mapping), with the values already converted by
    the columns' bind processors. SQLAlchemy's per-execution work is skipped,
    and so are the three or four thread hops its aiosqlite cursor takes per
    statement.

    On SQLite the transaction began with ``BEGIN IMMEDIATE`` and this joins it.
    On PostgreSQL SQLAlchemy sends ``BEGIN`` with its first statement: after one,
    this joins the transaction; as the transaction's first statement it runs
    and commits on its own, which saves two round trips but is only right for
    a statement that is the transaction's last, or a read (``read_only``) whose
    answer may be older than the writes that follow it. That rule is checked:
    a statement after such a write in the same transaction, through SQLAlchemy
    or this function, raises :class:`NotLastStatement`.

    A broken unique key raises :class:`DuplicateKey`; another constraint
    violation SQLAlchemy's ``IntegrityError``, as it would through SQLAlchemy.
    Once :func:`trace_statements` was called for the connection's engine, the
    statement gets a span like those sent through SQLAlchemy.
    """
    sync = conn.sync_connection
    assert sync is not None  # the connection is open
    check_not_after_lone_commit(sync, sql)
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None  # the connection is checked out for the transaction
    postgres = conn.dialect.name == "postgresql"
    alone = postgres and not read_only and _commits_alone(sync, driver)
    try:
        with _statement_span(sync, sql):
            if postgres:
                rows = list(await driver.fetch(sql, *params))
            else:
                rows = list(await driver.execute_fetchall(sql, params))
    except Exception as exc:
        if postgresql.is_unique_violation(exc) or sqlite.is_unique_violation(exc):
            raise DuplicateKey(str(exc)) from exc
        if postgresql.is_integrity_error(exc) or isinstance(exc, _sqlite_integrity()):
            raise IntegrityError(sql, params, exc) from exc
        raise
    if alone:
        transaction = sync.get_transaction()
        assert transaction is not None  # _commits_alone checked it
        sync.info[_COMMITTED_ALONE] = (weakref.ref(transaction), sql)
    return rows


def trace_statements(engine: Engine, system: str) -> None:
    """Give each statement :func:`fetch_on_driver` sends on ``engine``'s connections
    an internal span (``Database.trace_statements`` does the same for those sent
    through SQLAlchemy), sampled with the servers' other work (``_otel``)."""
    _TRACED[engine] = system


def statement_span_name(sql: str) -> str:
    """``db.<first keyword>``: ``db.select``, ``db.with``, ``db.update``."""
    words = sql.split(None, 1)
    return f"db.{words[0].lower()}" if words else "db.sql"


@contextlib.contextmanager
def _statement_span(conn: Connection, sql: str) -> Iterator[None]:
    system = _TRACED.get(conn.engine)
    if system is None:
        yield
        return
    attributes = {"db.system": system, "db.statement": sql[:STATEMENT_CHARS], DRIVER_LEVEL: True}
    span = _otel.start_internal_span(statement_span_name(sql), attributes)
    try:
        yield
    except Exception as exc:
        _otel.set_error(span, {"message": type(exc).__name__})
        raise
    finally:
        span.end()


def check_not_after_lone_commit(conn: Connection, sql: str) -> None:
    """Raise :class:`NotLastStatement` if a ``fetch_on_driver`` write committed on
    its own earlier in ``conn``'s transaction (see :func:`fetch_on_driver`)."""
    mark = conn.info.get(_COMMITTED_ALONE)
    if mark is None:
        return
    transaction, committed = mark
    if transaction() is not None and transaction() is conn.get_transaction():
        raise NotLastStatement(committed, sql)
    del conn.info[_COMMITTED_ALONE]  # a mark of a transaction that has ended


def _commits_alone(sync: Connection, driver: Any) -> bool:
    """Whether a statement sent now commits on its own though the caller opened a
    transaction: SQLAlchemy has not sent its (deferred) ``BEGIN`` yet."""
    if not sync.in_transaction() or driver.is_in_transaction():
        return False
    return sync.get_execution_options().get("isolation_level") != "AUTOCOMMIT"


def _sqlite_integrity() -> type[Exception]:
    import sqlite3

    return sqlite3.IntegrityError
