"""SQLite: one file, writers take turns on a lock, everything in one process.

Writes begin with ``BEGIN IMMEDIATE`` so concurrent writers queue on the lock
instead of failing when a read transaction upgrades; reads begin with a plain
``BEGIN``. None of the one-statement fast paths apply: there is no round trip
to save.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from triggerfish.store.dialects import Capabilities

CAPABILITIES = Capabilities(
    one_statement_claim=False,
    one_statement_trigger=False,
    one_statement_journal_write=False,
    reads_without_transaction=False,
    row_locks=False,
    report_linger=0.0,
    concurrent_writers=False,
)

#: SQLite's names for a broken unique key (a primary key is one too)
_UNIQUE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def create_engine(url: URL, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url, connect_args={"timeout": 30}, pool_size=pool_size, max_overflow=0
    )
    _configure(engine)
    return engine


def is_unique_violation(exc: BaseException) -> bool:
    """Whether sqlite3 raised ``exc`` for a broken unique key."""
    return isinstance(exc, sqlite3.IntegrityError) and exc.sqlite_errorname in _UNIQUE


def _configure(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is deferred).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("triggerfish_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
