"""Wake-ups: tell waiting dequeue calls that an environment has new work.

Within one server process an ``asyncio.Event`` per environment is enough
(``LocalNotifier``: SQLite dev mode). With several servers on PostgreSQL the
``PostgresNotifier`` also sends ``NOTIFY`` after commit and ``LISTEN``s on a
dedicated connection, so a run triggered on server A wakes a worker polling B.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)

CHANNEL = "triggerfish_work"


class Notifier:
    """Per-environment wake-up events for long-polling dequeue calls."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._timers: set[asyncio.Task[None]] = set()

    def _event(self, env_id: str) -> asyncio.Event:
        event = self._events.get(env_id)
        if event is None:
            event = self._events[env_id] = asyncio.Event()
        return event

    def listener(self, env_id: str) -> asyncio.Event:
        """The event the next ``notify(env_id)`` sets.

        Take it *before* looking for work, then wait on it, so a notification
        that lands between the look and the wait is not lost.
        """
        return self._event(env_id)

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout``; True if woken."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def wake_local(self, env_id: str) -> None:
        event = self._events.pop(env_id, None)
        if event is not None:
            event.set()

    async def notify(self, env_id: str) -> None:
        """Call after the transaction that made work available has committed."""
        self.wake_local(env_id)

    def notify_later(self, env_id: str, delay: float) -> None:
        """Notify after ``delay`` seconds (a retry whose backoff ends then)."""
        loop = asyncio.get_running_loop()
        task_set = self._timers

        def fire() -> None:
            task = loop.create_task(self.notify(env_id))
            task_set.add(task)
            task.add_done_callback(task_set.discard)

        loop.call_later(max(0.0, delay), fire)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


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
        for event in events.values():
            event.set()

    async def notify(self, env_id: str) -> None:
        """Wake this process's pollers now; other servers' through ``NOTIFY``, sent in
        the background so the caller (a trigger, a completion) does not wait for it."""
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
