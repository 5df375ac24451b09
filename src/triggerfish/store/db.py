"""Opening a database: engine, dialect, write/read transactions, schema checks."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from triggerfish import _otel
from triggerfish.errors import SchemaNotMigrated, StoreUnavailable
from triggerfish.store import driver
from triggerfish.store.dialects import Capabilities, DialectName, postgresql, sqlite
from triggerfish.store.driver import (
    STATEMENT_CHARS,
    check_not_after_lone_commit,
    statement_span_name,
)
from triggerfish.store.driver import bind_processors as bind_processors
from triggerfish.store.driver import fetch_on_driver as fetch_on_driver
from triggerfish.store.driver import stored_row as stored_row
from triggerfish.store.errors import DuplicateKey
from triggerfish.store.notify import Notifier

#: the dialect's name, as ``Database.dialect`` gives it (kept for the store's callers)
Dialect = DialectName
#: a connection's open statement spans (``Database.trace_statements``)
_SPANS = "tf_statement_spans"
#: when a connection's statement was sent (``Database.time_statements``)
_STARTED = "tf_statement_started"


def normalise_url(url: str) -> URL:
    """Accept plain ``postgresql://`` / ``sqlite:///`` URLs and pick our async drivers."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)}: "
        "use postgresql://… or sqlite:///path"
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class Database:
    """One database: the async engine plus what its dialect can do.

    ``write()`` opens a transaction that will write: on SQLite it begins with
    ``BEGIN IMMEDIATE`` so concurrent writers queue on the lock instead of failing
    on upgrade. ``read()`` opens a plain transaction. ``capabilities`` says which
    fast paths the database allows (``store/dialects/``): callers ask it rather
    than the dialect's name.
    """

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.dialect: Dialect = (
            "postgresql" if self.url.get_backend_name() == "postgresql" else "sqlite"
        )
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        self.capabilities: Capabilities = dialect.CAPABILITIES
        self.engine: AsyncEngine = dialect.create_engine(self.url, pool_size)
        event.listen(self.engine.sync_engine, "before_cursor_execute", _refuse_after_lone_commit)
        self._held_connections = (
            postgresql.HeldConnections(self.engine) if self.dialect == "postgresql" else None
        )
        #: called after each write transaction commits (the change feed's wake-up);
        #: cheap and synchronous, they must not raise
        self.on_commit: list[Callable[[], None]] = []
        self._traced = False
        self._timed = False

    def trace_statements(self) -> None:
        """One internal span per statement sent through SQLAlchemy (``db.<verb>``, with
        ``db.system`` and ``db.statement``: the SQL, never its parameters), sampled
        with the servers' other work (``_otel``); the statements of the
        driver-level fast paths (``fetch_on_driver``, ``fetch_alone``) too, marked
        ``triggerfish.db.driver_level``."""
        if self._traced:
            return
        self._traced = True
        system = self.dialect

        def before(conn: Any, _c: Any, statement: str, _p: Any, _x: Any, _m: bool) -> None:
            span = _otel.start_internal_span(
                statement_span_name(statement),
                {"db.system": system, "db.statement": statement[:STATEMENT_CHARS]},
            )
            conn.info.setdefault(_SPANS, []).append(span)

        def after(conn: Any, _c: Any, _s: str, _p: Any, _x: Any, _m: bool) -> None:
            spans = conn.info.get(_SPANS)
            if spans:
                spans.pop().end()

        def failed(context: Any) -> None:
            conn = context.connection
            spans = conn.info.get(_SPANS) if conn is not None else None
            if spans:
                span = spans.pop()
                _otel.set_error(span, {"message": type(context.original_exception).__name__})
                span.end()

        sync = self.engine.sync_engine
        driver.trace_statements(sync, system)
        event.listen(sync, "before_cursor_execute", before)
        event.listen(sync, "after_cursor_execute", after)
        event.listen(sync, "handle_error", failed)

    def time_statements(self, observe: Callable[[float], None]) -> None:
        """Give the seconds each statement took to ``observe``: those sent through
        SQLAlchemy and those of the driver-level fast paths (``fetch_on_driver``,
        ``fetch_alone``) alike. Statements that raised are not timed."""
        if self._timed:
            return
        self._timed = True

        def before(conn: Any, _c: Any, _s: str, _p: Any, _x: Any, _m: bool) -> None:
            conn.info[_STARTED] = time.perf_counter()

        def after(conn: Any, _c: Any, _s: str, _p: Any, _x: Any, _m: bool) -> None:
            started = conn.info.pop(_STARTED, None)
            if started is not None:
                observe(time.perf_counter() - started)

        sync = self.engine.sync_engine
        driver.time_statements(sync, observe)
        event.listen(sync, "before_cursor_execute", before)
        event.listen(sync, "after_cursor_execute", after)

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        with _store_errors():
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(triggerfish_write=True)
                async with conn.begin():
                    yield conn
        for hook in self.on_commit:
            hook()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with _store_errors():
            async with self.engine.connect() as conn, conn.begin():
                yield conn

    async def ping(self) -> None:
        """One round trip; raises ``StoreUnavailable`` while the database is away."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def check_migrated(self) -> None:
        """Raise ``SchemaNotMigrated`` unless the schema is at the newest revision."""
        from triggerfish.store.migrate import current_revision, head_revision

        current = await current_revision(self)
        head = head_revision()
        if current != head:
            raise SchemaNotMigrated(self.display_url, current, head)

    async def fetch_alone(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Run one self-contained statement on PostgreSQL (its own transaction); its rows.

        On a connection held out of the pool (``dialects.postgresql.HeldConnections``).
        Parameters are in asyncpg's style, as for ``fetch_on_driver``.
        """
        if self._held_connections is None:
            raise NotImplementedError(
                f"fetch_alone needs PostgreSQL, not {self.dialect}: ask "
                "db.capabilities before taking a one-statement path"
            )
        with _store_errors():
            async with self._held_connections.connection() as conn:
                rows = await fetch_on_driver(conn, sql, params)
        for hook in self.on_commit:
            hook()
        return rows

    def new_notifier(self) -> Notifier:
        """The wake-up notifier for this database: across servers on PostgreSQL
        (``LISTEN``/``NOTIFY``), within this process on SQLite."""
        if self.dialect == "postgresql":
            dsn = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
            return postgresql.PostgresNotifier(dsn)
        return Notifier()

    async def dispose(self) -> None:
        if self._held_connections is not None:
            await self._held_connections.close()
        await self.engine.dispose()


def _refuse_after_lone_commit(
    conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
) -> None:
    check_not_after_lone_commit(conn, statement)


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Raise the store's errors for the drivers' own.

    A lost or refused database connection becomes ``StoreUnavailable``: the
    callers above the store see one retryable error (the API answers 503)
    instead of each driver's own. A broken unique key becomes
    ``DuplicateKey``. Everything else passes through unchanged.
    """
    try:
        yield
    except Exception as exc:
        if _is_connection_loss(exc):
            raise StoreUnavailable(
                f"the database connection failed ({_kind(exc)}); retry shortly"
            ) from exc
        if isinstance(exc, IntegrityError) and _is_unique_violation(exc):
            raise DuplicateKey(str(exc.orig)) from exc
        raise


def _is_connection_loss(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return _caused_by(exc, postgresql.is_connection_loss)
    return postgresql.is_connection_loss(exc)


def _is_unique_violation(exc: IntegrityError) -> bool:
    return _caused_by(exc, postgresql.is_unique_violation) or _caused_by(
        exc, sqlite.is_unique_violation
    )


def _caused_by(exc: DBAPIError, test: Any) -> bool:
    """Whether the driver's error under ``exc`` (or one it was raised from) passes ``test``."""
    cause: BaseException | None = exc.orig
    while cause is not None and not test(cause):
        cause = cause.__cause__
    return cause is not None


def _kind(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return type(cause).__name__


@functools.cache
def database_errors() -> tuple[type[Exception], ...]:
    """What a statement may raise when the database fails it (refused, deadlocked,
    lost, unavailable), whichever way it was sent: through SQLAlchemy, or straight
    to the driver (``fetch_on_driver``, ``Database.fetch_alone``).

    For a caller that falls back to a slower path on a database failure: it
    catches these (``except database_errors():``), never ``Exception``, so that a
    programming error fails loudly instead of taking the other path.
    """
    import sqlite3

    import asyncpg

    return (DBAPIError, StoreUnavailable, asyncpg.PostgresError, sqlite3.Error)
