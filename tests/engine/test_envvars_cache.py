"""Claims read environment variables through a cache on a lone PostgreSQL server
(engine/envvars.py): a claim spends no round trip on them, yet a change made
through the server applies to the very next claim; with two servers on one
store, every claim reads afresh."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests import support
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.store import envvars as envvar_store


def count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The environments whose variables were read from the store, in order."""
    reads: list[str] = []
    real = envvar_store.sealed_values

    async def counted(conn: Any, env_id: str) -> list[tuple[str, str]]:
        reads.append(env_id)
        return await real(conn, env_id)

    monkeypatch.setattr(envvar_store, "sealed_values", counted)
    return reads


async def until_alone(engine: Engine) -> None:
    """Wait (bounded) until the engine has counted the servers and found itself alone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not engine.res.notifier.alone():
        assert loop.time() < deadline, "the notifier never counted itself alone"
        await asyncio.sleep(0.01)


async def test_a_lone_server_reads_once_and_a_change_applies_to_the_next_claim(
    pg_db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = count_reads(monkeypatch)
    async with support.started_engine(pg_db_url, clock) as engine:
        env = await engine.environments.by_slug("dev")
        await until_alone(engine)
        await engine.envvars.create(env.id, "API_URL", "https://one.example")
        assert await engine.envvars.for_attempts(env.id) == {"API_URL": "https://one.example"}
        assert await engine.envvars.for_attempts(env.id) == {"API_URL": "https://one.example"}
        assert len(reads) == 1  # the second claim used the cache
        await engine.envvars.update(env.id, "dev", "API_URL", "https://two.example")
        assert await engine.envvars.for_attempts(env.id) == {"API_URL": "https://two.example"}
        await engine.envvars.delete(env.id, "dev", "API_URL")
        assert await engine.envvars.for_attempts(env.id) == {}
        await engine.envvars.upload(env.id, {"A": "1"})
        assert await engine.envvars.for_attempts(env.id) == {"A": "1"}
        assert len(reads) == 4  # one read after each change, none between


async def test_with_two_servers_every_claim_reads_afresh(
    pg_db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        support.started_engine(pg_db_url, clock) as a,
        support.started_engine(pg_db_url, clock) as b,
    ):
        b.res.keyring = a.res.keyring  # servers of one store share the keyring
        env = await a.environments.by_slug("dev")
        await until_counted(a, b)
        reads = count_reads(monkeypatch)
        assert await b.envvars.for_attempts(env.id) == {}
        await a.envvars.create(env.id, "TOKEN", "set-through-a")
        assert await b.envvars.for_attempts(env.id) == {"TOKEN": "set-through-a"}
        await b.envvars.update(env.id, "dev", "TOKEN", "set-through-b")
        assert await a.envvars.for_attempts(env.id) == {"TOKEN": "set-through-b"}
        assert len(reads) == 3  # each claim read the store


async def test_a_server_that_starts_while_another_caches_reaches_it(
    pg_db_url: str, clock: ManualClock
) -> None:
    """The first server still believes it is alone for up to a second; a change
    made through the newcomer meanwhile reaches it by NOTIFY."""
    async with support.started_engine(pg_db_url, clock) as a:
        env = await a.environments.by_slug("dev")
        await until_alone(a)
        await a.envvars.create(env.id, "MODE", "old")
        assert await a.envvars.for_attempts(env.id) == {"MODE": "old"}
        async with support.started_engine(pg_db_url, clock) as b:
            b.res.keyring = a.res.keyring  # servers of one store share the keyring
            b.res.notifier.alone()  # the newcomer counts at once: it sees A
            await until_counted(b)
            await b.envvars.update(env.id, "dev", "MODE", "new")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while await a.envvars.for_attempts(env.id) != {"MODE": "new"}:
                assert loop.time() < deadline, "the change never reached the first server"
                await asyncio.sleep(0.01)


async def until_counted(*engines: Engine) -> None:
    """Wait (bounded) until each engine has counted the others and knows it is not alone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    for engine in engines:
        notifier: Any = engine.res.notifier
        while not (notifier._others and loop.time() < notifier._others_until):
            assert loop.time() < deadline, "the servers never counted each other"
            engine.res.notifier.alone()  # starts a count when the last one is stale
            await asyncio.sleep(0.01)


def test_sqlite_reads_on_every_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = count_reads(monkeypatch)
    url = support.new_sqlite_database(tmp_path / "store.db")

    async def go() -> None:
        async with support.started_engine(url, ManualClock()) as engine:
            env = await engine.environments.by_slug("dev")
            for _ in range(3):
                assert await engine.envvars.for_attempts(env.id) == {}

    asyncio.run(go())
    assert len(reads) == 3
