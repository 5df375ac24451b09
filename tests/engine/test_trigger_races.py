"""Triggers that race each other on the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest


async def test_concurrent_triggers_with_one_idempotency_key_make_one_run(engine: Engine) -> None:
    env = await engine.environments.by_slug("dev")
    manifest = {"id": "t", "queue": {"name": "task/t"}}
    await engine.workers.register(env.id, version="v1", name="w", concurrency=1, tasks=[manifest])
    # the queue exists, and the pool holds a connection for each racer
    await asyncio.gather(*(engine.enqueue.trigger(env.id, TriggerRequest("t")) for _ in range(8)))

    results = await asyncio.gather(
        *(
            engine.enqueue.trigger(env.id, TriggerRequest("t", idempotency_key="k"))
            for _ in range(8)
        )
    )

    assert len({r.id for r in results}) == 1
    assert sum(not r.is_cached for r in results) == 1
