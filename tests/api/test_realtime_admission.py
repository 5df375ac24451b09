"""Many realtime subscribers connecting at once on a small connection pool: their
first states wait in line at the change feed's gate (none fails on the pool, the
worker's calls still go through), and one not admitted in time gets a 503 with
Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served, serve
from tests.support import wait_for_async
from triggerfish._domain.attempts import Succeeded
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.sdk._sse import Parser
from triggerfish.store import runs as run_store
from triggerfish.worker.api_client import CompletionReport

#: connections per server process in these tests (PostgreSQL adds as many again
#: as overflow): the gate admits one first state at a time
POOL = 2
#: seconds a pooled connection is waited for before the pool gives up (30 by default)
POOL_TIMEOUT = 1.0


@contextlib.asynccontextmanager
async def small_server(
    db_url: str, clock: ManualClock, admission_timeout: float
) -> AsyncIterator[tuple[Engine, Served]]:
    settings = ServerSettings(
        database_url=db_url,
        heartbeat_timeout=30,
        maintenance_interval=0.05,
        pool_size=POOL,
        realtime_admission_timeout=admission_timeout,
    )
    engine = Engine.create(settings, clock=clock)
    await engine.start(background=False)
    await engine.environments.bootstrap()
    try:
        async with serve(engine) as served:
            yield engine, served
    finally:
        await engine.close()


def slow_reads(engine: Engine, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every read transaction holds its connection ``seconds`` longer (a loaded
    database), and a connection is waited for at most ``POOL_TIMEOUT``."""
    db = engine.res.db
    real = db.read

    @contextlib.asynccontextmanager
    async def read() -> AsyncIterator[Any]:
        async with real() as conn:
            await asyncio.sleep(seconds)
            yield conn

    monkeypatch.setattr(db, "read", read)
    monkeypatch.setattr(db.engine.pool, "_timeout", POOL_TIMEOUT)


async def subscribe(http: httpx.AsyncClient, run_id: str) -> tuple[int, list[str]]:
    """The answer's status and the run's statuses the stream showed, until its end
    (``"end"`` last when it ended cleanly)."""
    seen: list[str] = []
    parser = Parser()
    async with http.stream(
        "GET", f"/api/v1/realtime/runs/{run_id}", headers={"Accept": "text/event-stream"}
    ) as response:
        if response.status_code != 200:
            return response.status_code, seen
        async for line in response.aiter_lines():
            event = parser.line(line)
            if event is None:
                continue
            if event.event == "end":
                seen.append("end")
                break
            status = event.data.get("data", {}).get("status")
            if status is not None:
                seen.append(status)
    return response.status_code, seen


async def test_a_burst_of_subscribers_waits_in_line_and_the_worker_still_reports(
    db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """50 subscribers connect at once to a server of 2 pooled connections whose
    reads are slow: each gets its run to COMPLETED and its end, none an error,
    while a worker claims, heartbeats and completes the runs meanwhile."""
    async with small_server(db_url, clock, admission_timeout=120) as (engine, served):
        run_ids = await served.trigger(5)
        slow_reads(engine, monkeypatch, 0.05)
        limits = httpx.Limits(max_connections=100)
        headers = {"Authorization": f"Bearer {served.key}"}
        async with httpx.AsyncClient(
            base_url=served.url, headers=headers, limits=limits, timeout=120
        ) as http:
            subscribers = [asyncio.create_task(subscribe(http, run_ids[i % 5])) for i in range(50)]
            # the worker, while they connect: claim (and start), heartbeat, complete
            claimed = await asyncio.wait_for(
                served.api.dequeue(served.worker_id, 5, 5, start=5), 30
            )
            assert sorted(c.job.run_id for c in claimed) == sorted(run_ids)
            held = [c.job.attempt_id for c in claimed]
            assert await asyncio.wait_for(served.api.heartbeat(served.worker_id, held), 30) == []
            done = [CompletionReport(c.job.run_id, c.job.attempt_id, Succeeded(1)) for c in claimed]
            answer = await served.api.reports([], done, give_up_after=30)
            assert len(answer.completions) == 5
            results = await asyncio.wait_for(asyncio.gather(*subscribers), 120)
        for status, seen in results:
            assert status == 200
            assert seen[-2:] == ["COMPLETED", "end"], seen


async def test_a_subscriber_not_admitted_in_time_gets_a_503_with_retry_after(
    db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with small_server(db_url, clock, admission_timeout=0.3) as (_engine, served):
        [run_id] = await served.trigger(1)
        release = asyncio.Event()
        held: list[bool] = []
        real = getattr(run_store, "with_feed_position", None)

        async def first_waits(*args: Any, **kwargs: Any) -> Any:
            if not held:  # the first subscriber's first state takes a long time
                held.append(True)
                await release.wait()
            assert real is not None
            return await real(*args, **kwargs)

        monkeypatch.setattr(run_store, "with_feed_position", first_waits, raising=False)
        first = asyncio.create_task(subscribe(served.http, run_id))
        await wait_for_async(lambda: bool(held), timeout=10, what="the first state begun")
        turned_away = await served.http.get(
            f"/api/v1/realtime/runs/{run_id}", headers={"Accept": "text/event-stream"}
        )
        assert turned_away.status_code == 503
        assert turned_away.headers["Retry-After"] == "1"
        assert "retry later" in turned_away.json()["error"]
        release.set()
        await run_to_completion(served)
        status, seen = await asyncio.wait_for(first, 30)
        assert status == 200 and seen[0] == "QUEUED" and seen[-2:] == ["COMPLETED", "end"]


async def run_to_completion(served: Served) -> None:
    [claimed] = await served.api.dequeue(served.worker_id, 1, 5, start=1)
    report = CompletionReport(claimed.job.run_id, claimed.job.attempt_id, Succeeded(1))
    await served.api.reports([], [report], give_up_after=30)
    assert await served.status(claimed.job.run_id) == "COMPLETED"
