"""A burst of requests with the same cache miss reads the store once: a key not
cached, a public token's environment, a run's final state for its subscribers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.engine.test_runs_engine import setup
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.store import envs as env_store
from triggerfish.store import runs as run_store


def counted(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(module, name)

    async def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        await asyncio.sleep(0.05)  # long enough for every caller to arrive meanwhile
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, name, call)
    return calls


async def test_a_burst_with_a_key_not_cached_reads_it_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = await engine.environments.create_key("dev", "burst")
    reads = counted(monkeypatch, env_store, "environment_for_key")
    envs = await asyncio.gather(*(engine.environments.authenticate(key) for _ in range(100)))
    assert reads == [1] and {e.slug for e in envs} == {"dev"}


async def test_a_burst_of_public_tokens_reads_their_environment_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = await engine.environments.create_key("dev", "burst")
    env = await engine.environments.authenticate(key)
    token = engine.public_tokens.sign(env, key, ["read:runs"], 60)
    reads = counted(monkeypatch, env_store, "environment_by_id")
    found = await asyncio.gather(*(engine.public_tokens.verify(token) for _ in range(100)))
    assert reads == [1] and {e.id for e in found} == {env.id}


async def test_subscribers_of_a_run_that_ended_read_it_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_id, _ = await setup(engine)
    run = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    await engine.runs.cancel(env_id, run.id)
    reads = counted(monkeypatch, run_store, "get")
    rows = await asyncio.gather(*(engine.changes.final_run(env_id, run.id) for _ in range(50)))
    assert reads == [1] and {r.status for r in rows if r is not None} == {"CANCELED"}
