"""Opening a database: engine, dialect quirks, write/read transactions, schema checks."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Table, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine import Dialect as SQLDialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from triggerfish.errors import SchemaNotMigrated, StoreUnavailable

Dialect = Literal["sqlite", "postgresql"]


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
    """One database: the async engine plus what differs between dialects.

    ``write()`` opens a transaction that will write: on SQLite it begins with
    ``BEGIN IMMEDIATE`` so concurrent writers queue on the lock instead of failing
    on upgrade. ``read()`` opens a plain transaction.
    """

    #: PostgreSQL connections kept out of the pool for ``fetch_alone`` at most
    HELD_CONNECTIONS = 4

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.dialect: Dialect = (
            "postgresql" if self.url.get_backend_name() == "postgresql" else "sqlite"
        )
        self.engine: AsyncEngine = self._create_engine(pool_size)
        # held for fetch_alone, not in use: each with its asyncpg connection
        self._idle: list[tuple[AsyncConnection, Any]] = []
        self._held = 0

    def _create_engine(self, pool_size: int) -> AsyncEngine:
        if self.dialect == "sqlite":
            engine = create_async_engine(
                self.url, connect_args={"timeout": 30}, pool_size=pool_size, max_overflow=0
            )
            _configure_sqlite(engine)
            return engine
        engine = create_async_engine(
            self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
        )
        _configure_postgresql(engine)
        return engine

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable_on_connection_loss():
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(triggerfish_write=True)
                async with conn.begin():
                    yield conn

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        with _unavailable_on_connection_loss():
            async with self.engine.connect() as conn, conn.begin():
                yield conn

    async def check_migrated(self) -> None:
        """Raise ``SchemaNotMigrated`` unless the schema is at the newest revision."""
        from triggerfish.store.migrate import current_revision, head_revision

        current = await current_revision(self)
        head = head_revision()
        if current != head:
            raise SchemaNotMigrated(self.display_url, current, head)

    async def fetch_alone(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Run one self-contained statement on PostgreSQL (its own transaction); its rows.

        For the hottest single statements (a step's journal write, a claim): a
        connection taken from the pool and given back costs SQLAlchemy about as
        much as PostgreSQL takes to run such a statement, so up to
        ``HELD_CONNECTIONS`` connections stay out of the pool for them. A
        statement that finds none free takes one from the pool as usual. A held
        connection PostgreSQL has closed (a restart) is dropped unused, and one
        whose statement failed other than by the database's refusal (a lost
        connection, a cancelled call) is thrown away. Parameters are in
        asyncpg's style, as for ``fetch_on_driver``.
        """
        with _unavailable_on_connection_loss():
            held = await self._held_connection()
            if held is None:
                async with self.engine.connect() as passing:
                    passing = await passing.execution_options(isolation_level="AUTOCOMMIT")
                    return await fetch_on_driver(passing, sql, params)
            try:
                rows = await fetch_on_driver(held[0], sql, params)
            except BaseException as exc:
                if _is_refusal(exc):
                    self._idle.append(held)
                else:
                    self._held -= 1
                    await _discard(held[0])
                raise
            self._idle.append(held)
            return rows

    async def _held_connection(self) -> tuple[AsyncConnection, Any] | None:
        """An open held connection (and its asyncpg connection), or None when all
        ``HELD_CONNECTIONS`` are in use."""
        while self._idle:
            held = self._idle.pop()
            if not held[1].is_closed():
                return held
            self._held -= 1
            await _discard(held[0])
        if self._held >= self.HELD_CONNECTIONS:
            return None
        self._held += 1
        try:
            conn = await self.engine.connect()
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return conn, (await conn.get_raw_connection()).driver_connection
        except BaseException:
            self._held -= 1
            raise

    async def dispose(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _driver in idle:
            await conn.close()
        self._held -= len(idle)
        await self.engine.dispose()


def _configure_postgresql(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # PostgreSQL closed this connection while it sat in the pool (a restart,
        # a terminated backend): the pool opens another instead of failing the
        # caller. Asking asyncpg costs no round trip, unlike a pre-ping.
        if dbapi_conn.driver_connection.is_closed():
            raise DisconnectionError("the database closed this pooled connection")


@contextlib.contextmanager
def _unavailable_on_connection_loss() -> Iterator[None]:
    """Raise ``StoreUnavailable`` for a lost or refused database connection.

    The callers above the store see one retryable error (the API answers 503)
    instead of each driver's own; everything else passes through unchanged.
    """
    try:
        yield
    except Exception as exc:
        if _is_connection_loss(exc):
            raise StoreUnavailable(
                f"the database connection failed ({_kind(exc)}); retry shortly"
            ) from exc
        raise


def _is_connection_loss(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        cause: BaseException | None = exc.orig
        while cause is not None and not _is_driver_connection_loss(cause):
            cause = cause.__cause__
        return cause is not None
    return _is_driver_connection_loss(exc)


def _is_driver_connection_loss(exc: BaseException) -> bool:
    import asyncpg
    from asyncpg.exceptions import OperatorInterventionError

    if isinstance(exc, asyncpg.InterfaceError):  # also raised for misuse, which is a bug
        return "connection is closed" in str(exc)
    lost = (asyncpg.PostgresConnectionError, OperatorInterventionError, OSError)
    return isinstance(exc, lost)


def _kind(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return type(cause).__name__


def _configure_sqlite(engine: AsyncEngine) -> None:
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


async def fetch_on_driver(conn: AsyncConnection, sql: str, params: Any) -> list[Any]:
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
    a statement that is the transaction's last, or a read whose answer may be
    older than the writes that follow it. A constraint violation raises
    SQLAlchemy's ``IntegrityError``, as it would through SQLAlchemy.
    """
    driver = (await conn.get_raw_connection()).driver_connection
    assert driver is not None  # the connection is checked out for the transaction
    try:
        if conn.dialect.name == "postgresql":
            return list(await driver.fetch(sql, *params))
        return list(await driver.execute_fetchall(sql, params))
    except Exception as exc:
        if _is_integrity_error(exc):
            raise IntegrityError(sql, params, exc) from exc
        raise


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


def _is_refusal(exc: BaseException) -> bool:
    """An error the database answered a statement with, which leaves the connection
    fine (not a lost connection, a shutdown or a cancelled call)."""
    import asyncpg
    from asyncpg.exceptions import OperatorInterventionError

    lost = asyncpg.PostgresConnectionError | OperatorInterventionError
    return isinstance(exc, IntegrityError | asyncpg.PostgresError) and not isinstance(exc, lost)


async def _discard(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


def _is_integrity_error(exc: Exception) -> bool:
    import sqlite3

    import asyncpg

    return isinstance(exc, asyncpg.IntegrityConstraintViolationError | sqlite3.IntegrityError)
