"""Wake-ups across servers on PostgreSQL: a trigger on one server wakes the pollers
of another, and a server alone sends no ``NOTIFY`` at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from tests.support import wait_for_async
from triggerfish.store.dialects.postgresql import PostgresNotifier


@pytest.fixture
def dsn(pg_db_url: str) -> str:
    return make_url(pg_db_url).set(drivername="postgresql").render_as_string(hide_password=False)


#: starts one more server's notifier
Starter = Callable[[], Awaitable[PostgresNotifier]]


@pytest.fixture
async def servers(dsn: str) -> AsyncIterator[Starter]:
    """Starts notifiers (one per server) that count the NOTIFYs they send."""
    started: list[PostgresNotifier] = []

    async def start() -> PostgresNotifier:
        notifier = PostgresNotifier(dsn)
        notifier.PRESENCE_TTL = 0.05  # see a server come and go quickly
        await notifier.start()
        started.append(notifier)
        return notifier

    yield start
    for notifier in started:
        await notifier.close()


class _Counting:
    """The send connection, recording each environment a NOTIFY is sent for."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.sent = conn, list[str]()

    async def execute(self, sql: str, *args: Any) -> Any:
        if "pg_notify" in sql:
            self.sent.append(str(args[1]))
        return await self.conn.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def _sent(notifier: PostgresNotifier) -> list[str]:
    """The environments ``notifier`` sends a NOTIFY for, from now on."""
    counting = _Counting(notifier._send_conn)
    notifier._send_conn = counting
    return counting.sent


async def _settle(notifier: PostgresNotifier) -> None:
    """Until the NOTIFYs queued so far are sent (or found unneeded)."""
    while notifier._sending:
        await asyncio.wait(set(notifier._sending), timeout=5)


async def test_a_lone_server_wakes_its_own_pollers_without_notify(servers: Starter) -> None:
    alone: PostgresNotifier = await servers()
    sent = _sent(alone)
    for _ in range(3):
        woken = alone.listener("env_a")
        await alone.notify("env_a")
        assert woken.is_set()  # its own pollers, at once
        await _settle(alone)
    assert sent == []


async def test_a_trigger_on_one_server_wakes_the_pollers_of_another(
    servers: Starter,
) -> None:
    a: PostgresNotifier = await servers()
    sent = _sent(a)
    await a.notify("env_a")
    await _settle(a)
    assert sent == []

    b: PostgresNotifier = await servers()
    await asyncio.sleep(a.PRESENCE_TTL)  # a's count of other servers has gone stale
    polling_on_b = b.listener("env_a")
    await a.notify("env_a")
    await asyncio.wait_for(polling_on_b.wait(), timeout=5)
    assert sent == ["env_a"]

    # b is gone: a stops sending once it has seen that
    await b.close()
    await asyncio.sleep(a.PRESENCE_TTL)
    await a.notify("env_a")
    await _settle(a)
    await a.notify("env_a")
    await _settle(a)
    assert sent == ["env_a"]


async def _terminate_backend(dsn: str, pid: int | None) -> None:
    """End a server's connection from PostgreSQL's side, as a restart would (from a
    connection of its own: the notifiers' are busy with their own work meanwhile)."""
    assert pid is not None
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def _wakes_across(a: PostgresNotifier, b: PostgresNotifier) -> None:
    """A notify on ``a`` wakes a poller of ``b`` (once ``a`` has counted ``b``)."""
    a._others_until = 0.0  # count the listening servers now, not after the TTL
    polling_on_b = b.listener("env_a")
    await a.notify("env_a")
    await asyncio.wait_for(polling_on_b.wait(), timeout=5)


async def test_a_server_listens_again_after_postgresql_drops_its_connection(
    servers: Starter, dsn: str
) -> None:
    a: PostgresNotifier = await servers()
    b: PostgresNotifier = await servers()
    await _wakes_across(a, b)
    deaf_pid = b._listen_pid
    polling_on_b = b.listener("env_b")

    await _terminate_backend(dsn, deaf_pid)
    # b listens again, and wakes its pollers: a wake-up sent meanwhile was lost
    await asyncio.wait_for(polling_on_b.wait(), timeout=10)
    await wait_for_async(
        lambda: b._listen_conn is not None and b._listen_pid != deaf_pid, what="b to listen again"
    )
    await _wakes_across(a, b)


async def test_a_server_sends_again_after_postgresql_drops_its_sending_connection(
    servers: Starter, dsn: str
) -> None:
    a: PostgresNotifier = await servers()
    b: PostgresNotifier = await servers()
    lost_pid = a._own_pid
    await _terminate_backend(dsn, lost_pid)
    await wait_for_async(
        lambda: a._send_conn is not None and a._own_pid != lost_pid, what="a to send again"
    )
    await _wakes_across(a, b)
    assert a._own_pid != lost_pid


class _Silent:
    """A listening connection that stopped answering without being closed."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def execute(self, *_args: Any) -> Any:
        await asyncio.Event().wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


async def test_a_listening_connection_that_stops_answering_is_replaced(
    servers: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(PostgresNotifier, "CHECK_INTERVAL", 0.05)
    a: PostgresNotifier = await servers()
    b: PostgresNotifier = await servers()
    silent = b._listen_conn = _Silent(b._listen_conn)
    await wait_for_async(
        lambda: b._listen_conn is not None and b._listen_conn is not silent,
        what="the silent connection to be replaced",
    )
    await _wakes_across(a, b)
