"""Two servers on one PostgreSQL database: a subscriber on server A sees, in order and
live, the changes made through server B (the change feed is the shared table;
NOTIFY wakes A's listeners), and its stream ends when B makes the run final."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests import support
from tests.api.conftest import MANIFEST
from tests.support import wait_for_async
from triggerfish import Triggerfish
from triggerfish.api import realtime
from triggerfish.cli._serve import make_server
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.sdk._models import RealtimeEvent
from triggerfish.worker.api_client import WorkerApi


@pytest.fixture
def pg_url(tmp_path: Path, pg_template: str) -> Iterator[str]:
    with support.database("postgresql", tmp_path, pg_template) as url:
        yield url


@pytest.fixture
async def two_servers(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, str, str]]:
    """Two HTTP servers (uvicorn, each with its own engine, pool and LISTEN connection)
    on one PostgreSQL database. Server A re-checks the feed only once a minute and
    sends no keep-alive for two, so within the test's timeouts only a NOTIFY from
    B's commits can wake it."""
    monkeypatch.setattr(realtime, "KEEPALIVE", 120.0)
    settings = ServerSettings(database_url=pg_url, server_secret=support.SERVER_SECRET)
    engines = [Engine.create(settings), Engine.create(settings)]
    async with contextlib.AsyncExitStack() as stack:
        for engine in engines:
            await engine.start(background=False)
            stack.push_async_callback(engine.close)
        await engines[0].environments.bootstrap()
        engines[0].changes._recheck = 60.0  # no polling to fall back on
        key, _ = await engines[0].environments.create_key("dev", "test")
        urls = []
        for engine in engines:
            port = support.free_port()
            server = make_server(engine, "127.0.0.1", port)
            serving = await support.serve_in_loop(server)
            stack.push_async_callback(support.stop_serving, server, serving)
            urls.append(f"http://127.0.0.1:{port}")
        yield urls[0], urls[1], key


def has_step(got: list[RealtimeEvent], step: int) -> bool:
    return any(e.kind == "metadata" and e.data["metadata"]["step"] == step for e in got)


async def test_a_subscriber_on_one_server_sees_changes_made_through_another(
    two_servers: tuple[str, str, str],
) -> None:
    url_a, url_b, key = two_servers
    on_a = Triggerfish(api_url=url_a, secret_key=key, socket=False)
    on_b = Triggerfish(api_url=url_b, secret_key=key, socket=False)
    try:
        # a worker registers the task through B (it runs nothing: the run stays delayed)
        await WorkerApi(url_b, key).register(
            {"version": "v1", "name": "w", "concurrency": 1, "tasks": [MANIFEST]}
        )
        handle = await on_b.tasks.trigger_async("job", {"n": 1}, delay="1h")
        got: list[RealtimeEvent] = []

        async def subscribe() -> None:
            async for event in on_a.runs.subscribe_async(handle.id):
                got.append(event)

        subscribing = asyncio.create_task(subscribe())
        await wait_for_async(lambda: bool(got), timeout=20, what="the snapshot on A")
        for step in (1, 2, 3):
            await on_b.runs.update_metadata_async(handle.id, {"step": step})
            # each change reaches A while the subscription is live, before the next one
            await wait_for_async(
                partial(has_step, got, step), timeout=20, what=f"metadata step {step} on A"
            )
        await on_b.runs.cancel_async(handle.id)
        await asyncio.wait_for(subscribing, 20)  # A ends the stream: the run is final
        assert got[0].kind == "snapshot" and got[0].status == "DELAYED"
        metadata = [e.data["metadata"]["step"] for e in got if e.kind == "metadata"]
        assert metadata == [1, 2, 3]
        assert got[-1].status == "CANCELED"
        ids = [e.id for e in got[1:]]
        assert ids == sorted(set(ids))  # no change repeated, in feed order
    finally:
        await on_a.aclose()
        await on_b.aclose()
