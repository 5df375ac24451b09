"""A finished attempt keeps its lease while its report is retried (issue 17, defect 1).

A real worker (in this process, its task processes its own) against a real
server whose report route answers 503 for a while, as during a database
outage, while heartbeats land. The manual clock lets the lease run out
between heartbeats whenever the test says so: the attempt must still be held,
and its report lands once the route answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.support.in_process import run_record
from triggerfish.cli._serve import make_server
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import ApiError, StoreUnavailable
from triggerfish.worker import supervisor
from triggerfish.worker.api_client import WorkerApi
from triggerfish.worker.discovery import ProjectConfig
from triggerfish.worker.supervisor import Worker, WorkerOptions

PROJECT = Path(__file__).resolve().parent.parent / "pool_project"
#: seconds; the worker heartbeats every third of it
HEARTBEAT_TIMEOUT = 1.5


@dataclass
class Server:
    """The engine's report route, made to fail on demand, and its heartbeats as they land."""

    engine: Engine
    clock: ManualClock
    url: str = ""
    reports_down: bool = False
    refused_reports: int = 0
    #: each heartbeat: the clock reading it renewed leases from, and the attempts it named
    heartbeats: list[tuple[float, list[str]]] = field(default_factory=list)

    def break_reports(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for owner, name in (
            (self.engine.attempts, "report_many"),
            (self.engine.dequeue, "report_and_claim"),
        ):
            monkeypatch.setattr(owner, name, self._unless_down(getattr(owner, name)))
        original = self.engine.attempts.heartbeat

        async def heartbeat(worker_id: str, attempt_ids: list[str]) -> list[str]:
            at = self.clock.now()  # what the lease is renewed from
            stop = await original(worker_id, attempt_ids)
            self.heartbeats.append((at, list(attempt_ids)))
            return stop

        monkeypatch.setattr(self.engine.attempts, "heartbeat", heartbeat)

    def _unless_down(self, call: Any) -> Any:
        async def maybe(*args: Any, **kwargs: Any) -> Any:
            if self.reports_down:
                self.refused_reports += 1
                raise StoreUnavailable("the database connection failed (test)")
            return await call(*args, **kwargs)

        return maybe


@pytest.fixture
async def server(engine: Engine, clock: ManualClock) -> AsyncIterator[Server]:
    engine.res.settings.heartbeat_timeout = HEARTBEAT_TIMEOUT
    port = support.free_port()
    embedded = make_server(engine, "127.0.0.1", port)
    serving = await support.serve_in_loop(embedded)
    try:
        yield Server(engine, clock, f"http://127.0.0.1:{port}")
    finally:
        await support.stop_serving(embedded, serving)


@contextlib.asynccontextmanager
async def running_worker(url: str, key: str) -> AsyncIterator[Worker]:
    worker = Worker(
        ProjectConfig.load(PROJECT), WorkerOptions(url, key, concurrency=1, poll_wait=1.0)
    )
    serving = asyncio.create_task(worker.run())
    try:
        await support.wait_for_async(
            lambda: worker.worker_id or serving.done(), 30, what="the worker to register"
        )
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(serving, 60)


async def test_a_report_retried_past_the_heartbeat_timeout_keeps_its_attempt(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, clock = server.engine, server.clock
    monkeypatch.setattr(supervisor, "settle_after_startup", lambda: None)  # no gc.freeze here
    key, _ = await engine.environments.create_key("dev", "test")
    env_id = (await engine.environments.by_slug("dev")).id
    server.break_reports(monkeypatch)
    server.reports_down = True
    async with running_worker(server.url, key) as worker:
        run = await engine.enqueue.trigger(env_id, TriggerRequest("stepper", {"n": 21}))
        # the task ran; its report is refused and retried
        await support.wait_for_async(
            lambda: server.refused_reports >= 2, 30, what="the report to be refused twice"
        )
        # the lease runs out, unless a heartbeat after this moment renews it
        clock.advance(2 * HEARTBEAT_TIMEOUT)
        since = clock.now()
        await support.wait_for_async(
            lambda: any(at >= since for at, _ in server.heartbeats),
            30,
            what="a heartbeat after the lease ran out",
        )
        assert await engine.maintenance.reclaim_expired_leases() == 0
        assert (await run_record(engine, env_id, run.id)).status == "EXECUTING"

        server.reports_down = False

        async def completed() -> Any:
            record = await run_record(engine, env_id, run.id)
            return record if record.status == "COMPLETED" else None

        done = await support.wait_for_async(completed, 30, what="the report to land")
        assert done.attempt_count == 1 and done.output == 42
        assert await engine.maintenance.reclaim_expired_leases() == 0
        assert worker.api.max_retry_delay == pytest.approx(HEARTBEAT_TIMEOUT / 3 / 2)


async def test_retries_wait_no_longer_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    api = WorkerApi("http://127.0.0.1:9", "tr_dev_x")
    api.max_retry_delay = 0.25
    tries = 0

    async def unavailable() -> None:
        nonlocal tries
        tries += 1
        if tries < 8:
            raise ApiError(503, "the database is unavailable")

    try:
        await api._reliably(unavailable, "reports", give_up_after=60)
    finally:
        await api.close()
    assert tries == 8 and waits == [0.2, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]
