"""Wake-ups across servers on PostgreSQL: a trigger on one server wakes the pollers
of another, and a server alone sends no ``NOTIFY`` at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from triggerfish.engine.notify import PostgresNotifier


@pytest.fixture
def dsn(pg_db_url: str) -> str:
    return make_url(pg_db_url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def servers(dsn: str) -> AsyncIterator[Callable[[], PostgresNotifier]]:
    """Starts notifiers (one per server) that count the NOTIFYs they send."""
    started: list[PostgresNotifier] = []

    async def start() -> PostgresNotifier:
        notifier = PostgresNotifier(dsn)
        notifier.PRESENCE_TTL = 0.05  # see a server come and go quickly
        await notifier.start()
        started.append(notifier)
        return notifier

    yield start  # type: ignore[misc]
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


async def test_a_lone_server_wakes_its_own_pollers_without_notify(servers: Callable) -> None:
    alone: PostgresNotifier = await servers()
    sent = _sent(alone)
    for _ in range(3):
        woken = alone.listener("env_a")
        await alone.notify("env_a")
        assert woken.is_set()  # its own pollers, at once
        await _settle(alone)
    assert sent == []


async def test_a_trigger_on_one_server_wakes_the_pollers_of_another(
    servers: Callable,
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
