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
    """

    #: the advisory lock key a listening server holds (shared), marking its presence
    PRESENCE_LOCK = 0x7472_6967_6669_7368  # "trigfish"
    #: how long the count of other listening servers is trusted, in seconds
    PRESENCE_TTL = 1.0

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

    async def start(self) -> None:
        import asyncpg

        self._listen_conn = await asyncpg.connect(self._dsn)
        await self._listen_conn.add_listener(CHANNEL, self._on_notification)
        await self._listen_conn.execute("SELECT pg_advisory_lock_shared($1)", self.PRESENCE_LOCK)
        self._listen_pid = self._listen_conn.get_server_pid()
        self._send_conn = await asyncpg.connect(self._dsn)
        self._own_pid = self._send_conn.get_server_pid()

    def _on_notification(self, _conn: Any, pid: int, _channel: str, payload: str) -> None:
        # Our own NOTIFY echoes back: this process already woke its pollers
        # when it sent it, and a second wake-up would only cost them an empty claim.
        if pid != self._own_pid:
            self.wake_local(payload)

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
                if self._send_conn is not None and await self._others_listen():
                    await self._send_conn.execute("SELECT pg_notify($1, $2)", CHANNEL, env_id)
        except Exception:  # a lost wake-up only costs latency: pollers re-check
            self._pending.discard(env_id)
            log.warning("NOTIFY failed; workers will pick the run up on their next poll")

    async def _others_listen(self) -> bool:
        """Whether another server holds the presence lock (cached ``PRESENCE_TTL`` s)."""
        loop = asyncio.get_running_loop()
        if loop.time() >= self._others_until:
            query, key = _OTHER_LISTENERS, self.PRESENCE_LOCK
            self._others = bool(await self._send_conn.fetchval(query, key, self._listen_pid))
            self._others_until = loop.time() + self.PRESENCE_TTL
        return self._others

    async def close(self) -> None:
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=5)
        for conn in (self._listen_conn, self._send_conn):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
        self._listen_conn = self._send_conn = None


# servers other than this one holding the presence lock in this database (a
# bigint advisory key shows in pg_locks as its high and low 32 bits)
_OTHER_LISTENERS = """
SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND pid <> $2
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid
  AND objsubid = 1
"""
