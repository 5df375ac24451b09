"""PostgreSQL: a server over the network, row locks, LISTEN/NOTIFY.

What only PostgreSQL needs lives here: its capabilities (every one-statement
fast path applies, since each saved statement is a saved round trip), the
pooled connections' check, the connections held out of the pool for
``Database.fetch_alone``, how its driver says a connection was lost or a key
was taken, and the notifier that wakes pollers on other servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from triggerfish.store.dialects import Capabilities
from triggerfish.store.errors import DuplicateKey
from triggerfish.store.notify import Notifier

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(
    one_statement_claim=True,
    one_statement_trigger=True,
    one_statement_journal_write=True,
    reads_without_transaction=True,
    row_locks=True,
    report_linger=0.002,
    concurrent_writers=True,
)

#: the channel of wake-ups between servers
CHANNEL = "triggerfish_work"


def create_engine(url: URL, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
    )

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # PostgreSQL closed this connection while it sat in the pool (a restart,
        # a terminated backend): the pool opens another instead of failing the
        # caller. Asking asyncpg costs no round trip, unlike a pre-ping.
        if dbapi_conn.driver_connection.is_closed():
            raise DisconnectionError("the database closed this pooled connection")

    return engine


class HeldConnections:
    """Connections kept out of the pool for single statements (``Database.fetch_alone``).

    For the hottest single statements (a step's journal write, a claim): a
    connection taken from the pool and given back costs SQLAlchemy about as
    much as PostgreSQL takes to run such a statement, so up to ``LIMIT``
    connections stay out of the pool for them, in autocommit. A statement that
    finds none free takes one from the pool as usual. A held connection
    PostgreSQL has closed (a restart) is dropped unused, and one whose
    statement failed other than by the database's refusal (a lost connection,
    a cancelled call) is thrown away.
    """

    #: connections held at most
    LIMIT = 4

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # held, not in use: each with its asyncpg connection
        self._idle: list[tuple[AsyncConnection, Any]] = []
        self._held = 0

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A held connection in autocommit, or a pooled one when all are in use."""
        held = await self._take()
        if held is None:
            async with self._engine.connect() as passing:
                yield await passing.execution_options(isolation_level="AUTOCOMMIT")
            return
        try:
            yield held[0]
        except BaseException as exc:
            if is_refusal(exc):
                self._idle.append(held)
            else:
                self._held -= 1
                await _discard(held[0])
            raise
        self._idle.append(held)

    async def _take(self) -> tuple[AsyncConnection, Any] | None:
        """An open held connection (and its asyncpg connection), or None when all
        ``LIMIT`` are in use."""
        while self._idle:
            held = self._idle.pop()
            if not held[1].is_closed():
                return held
            self._held -= 1
            await _discard(held[0])
        if self._held >= self.LIMIT:
            return None
        self._held += 1
        try:
            conn = await self._engine.connect()
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return conn, (await conn.get_raw_connection()).driver_connection
        except BaseException:
            self._held -= 1
            raise

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _driver in idle:
            await conn.close()
        self._held -= len(idle)


def is_connection_loss(exc: BaseException) -> bool:
    """Whether the driver raised ``exc`` because the connection is gone."""
    import asyncpg
    from asyncpg.exceptions import OperatorInterventionError

    if isinstance(exc, asyncpg.InterfaceError):  # also raised for misuse, which is a bug
        return "connection is closed" in str(exc)
    lost = (asyncpg.PostgresConnectionError, OperatorInterventionError, OSError)
    return isinstance(exc, lost)


def is_unique_violation(exc: BaseException) -> bool:
    """Whether asyncpg raised ``exc`` for a broken unique key."""
    import asyncpg

    return isinstance(exc, asyncpg.UniqueViolationError)


def is_integrity_error(exc: BaseException) -> bool:
    import asyncpg

    return isinstance(exc, asyncpg.IntegrityConstraintViolationError)


def is_refusal(exc: BaseException) -> bool:
    """An error the database answered a statement with, which leaves the connection
    fine (not a lost connection, a shutdown or a cancelled call)."""
    import asyncpg
    from asyncpg.exceptions import OperatorInterventionError

    lost = asyncpg.PostgresConnectionError | OperatorInterventionError
    refused = DuplicateKey | IntegrityError | asyncpg.PostgresError
    return isinstance(exc, refused) and not isinstance(exc, lost)


async def _discard(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


class PostgresNotifier(Notifier):
    """Wake-ups across servers: ``NOTIFY`` after commit, ``LISTEN`` on its own connection.

    A ``NOTIFY`` is only sent while another server listens: each server holds a
    shared advisory lock (``PRESENCE_LOCK``) on its listening connection, and
    the others are counted in ``pg_locks`` at most every ``PRESENCE_TTL``
    seconds. A lone server, the common case, so spends no round trip (and no
    echo of its own notification) on every trigger. A server that has just
    started is seen within that time; until then, its pollers find runs queued
    on other servers at their next re-check (``maintenance_interval``).

    The two connections outlive a restart of PostgreSQL: when either is lost
    (PostgreSQL says so, a statement on it fails, or the listening connection
    stops answering its periodic check) both are opened again, with backoff,
    and every poller of this server is woken once, since wake-ups sent while
    it was not listening were missed. Meanwhile this server's own pollers are
    still woken directly.
    """

    #: the advisory lock key a listening server holds (shared), marking its presence
    PRESENCE_LOCK = 0x7472_6967_6669_7368  # "trigfish"
    #: how long the count of other listening servers is trusted, in seconds
    PRESENCE_TTL = 1.0
    #: seconds between checks that the listening connection still answers
    CHECK_INTERVAL = 5.0
    #: the first and the longest wait between attempts to reconnect, in seconds
    RECONNECT_FIRST = 0.1
    RECONNECT_MAX = 5.0

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._listen_conn: Any = None
        self._send_conn: Any = None
        self._send_lock = asyncio.Lock()
        self._own_pid: int | None = None
        self._listen_pid: int | None = None
        # environments with a NOTIFY queued but not yet sent: later notifies of
        # the same environment ride on it (one wake-up covers all committed work)
        self._pending: set[str] = set()
        self._sending: set[asyncio.Task[None]] = set()
        # whether another server listens, and until when (loop time) that is known
        self._others = True
        self._others_until = 0.0
        self._counting = False
        self._lost = asyncio.Event()  # a connection was lost: reconnect
        self._keeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._connect()
        self._keeper = asyncio.create_task(self._keep_connected())

    async def _connect(self) -> None:
        import asyncpg

        listen = await asyncpg.connect(self._dsn)
        try:
            await listen.add_listener(CHANNEL, self._on_notification)
            await listen.execute("SELECT pg_advisory_lock_shared($1)", self.PRESENCE_LOCK)
            send = await asyncpg.connect(self._dsn)
        except BaseException:
            await _close_quietly(listen)
            raise
        self._lost.clear()
        for conn in (listen, send):
            conn.add_termination_listener(self._on_termination)
        self._listen_conn, self._send_conn = listen, send
        self._listen_pid, self._own_pid = listen.get_server_pid(), send.get_server_pid()
        self._others_until = 0.0  # count the other servers afresh

    def _on_termination(self, conn: Any) -> None:
        if conn is self._listen_conn or conn is self._send_conn:
            self._lost.set()  # not one closed on purpose

    def _on_notification(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        # Our own NOTIFY echoes back: this process already woke its pollers
        # when it sent it, and a second wake-up would only cost them an empty claim.
        if pid != self._own_pid:
            self.wake_local(payload)

    def wake_all_local(self) -> None:
        """Wake every poller of this process (each re-checks for work)."""
        events, self._events = self._events, {}
        for woken in events.values():
            woken.set()

    async def notify(self, env_id: str) -> None:
        """Wake this process's pollers now; other servers' through ``NOTIFY``, sent in
        the background so the caller (a trigger, a completion) does not wait for it."""
        self.notify_nowait(env_id)

    def alone(self) -> bool:
        """No other server held the presence lock at the last count, which is
        less than ``PRESENCE_TTL`` old (a stale count says no, and is redone in
        the background)."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._others_until:
            return not self._others
        if self._send_conn is not None and not self._counting:
            self._counting = True
            task = loop.create_task(self._count_others())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return False

    async def _count_others(self) -> None:
        try:
            async with self._send_lock:
                if self._send_conn is not None:
                    await self._others_listen(self._send_conn)
        except Exception:  # the keeper reconnects; until then, not alone
            self._lost.set()
        finally:
            self._counting = False

    def notify_nowait(self, env_id: str) -> None:
        self.wake_local(env_id)
        if self._send_conn is None or env_id in self._pending:
            return
        loop = asyncio.get_running_loop()
        if not self._others and loop.time() < self._others_until:
            return  # no other server listens
        self._pending.add(env_id)
        task = loop.create_task(self._send(env_id))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, env_id: str) -> None:
        try:
            async with self._send_lock:
                self._pending.discard(env_id)  # from here on, a new notify queues another
                conn = self._send_conn
                if conn is not None and await self._others_listen(conn):
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, env_id)
        except Exception:  # a lost wake-up only costs latency: pollers re-check
            self._pending.discard(env_id)
            self._lost.set()

    async def _others_listen(self, conn: Any) -> bool:
        """Whether another server holds the presence lock (cached ``PRESENCE_TTL`` s)."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self._others_until:
            query, key = _OTHER_LISTENERS, self.PRESENCE_LOCK
            self._others = bool(await conn.fetchval(query, key, self._listen_pid))
            self._others_until = loop.time() + self.PRESENCE_TTL
        return self._others

    async def _keep_connected(self) -> None:
        while True:
            lost = await self.wait(self._lost, self.CHECK_INTERVAL)
            if lost or not await self._answers():
                await self._reconnect()

    async def _answers(self) -> bool:
        """Whether the listening connection answers a query within ``CHECK_INTERVAL``."""
        try:
            async with asyncio.timeout(self.CHECK_INTERVAL):
                await self._listen_conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    async def _reconnect(self) -> None:
        old = (self._listen_conn, self._send_conn)
        self._listen_conn = self._send_conn = None  # no NOTIFY is sent meanwhile
        for conn in old:
            await _close_quietly(conn)
        log.warning(
            "lost the PostgreSQL connection that carries wake-ups between servers; "
            "reconnecting (runs queued meanwhile are found at the next re-check)"
        )
        delay = self.RECONNECT_FIRST
        while True:
            try:
                await self._connect()
                break
            except Exception as exc:
                log.debug("reconnecting the wake-up connection failed: %s", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.RECONNECT_MAX)
        log.info("wake-ups between servers restored")
        self.wake_all_local()  # what was sent while we were not listening is lost

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=5)
        conns = (self._listen_conn, self._send_conn)
        self._listen_conn = self._send_conn = None
        for conn in conns:
            await _close_quietly(conn)


async def _close_quietly(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), timeout=2)
        if not conn.is_closed():
            conn.terminate()


# servers other than this one holding the presence lock in this database (a
# bigint advisory key shows in pg_locks as its high and low 32 bits)
_OTHER_LISTENERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND pid <> $2
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid
  AND objsubid = 1
"""
