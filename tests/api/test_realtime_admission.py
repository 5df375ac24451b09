"""Many realtime subscribers connecting at once on a small connection pool: their
first states wait in line at the change feed's gate (none fails on the pool, the
worker's calls still go through), and one not admitted in time is told when to
come back (a stream of only ``retry:``), which the SDK follows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.api.conftest import Served, serve
from tests.dashboard.conftest import chromium
from tests.support import wait_for_async
from triggerfish import Triggerfish
from triggerfish._domain.attempts import Succeeded
from triggerfish.api import realtime
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import ServerBusy
from triggerfish.sdk import _sse as sse
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


@contextlib.contextmanager
def first_state_held(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[bool], asyncio.Event]]:
    """The first subscriber's first state waits for the event it yields (with the
    flag set once it has begun); the others' read at once once admitted."""
    release = asyncio.Event()
    held: list[bool] = []
    real = getattr(run_store, "with_feed_position", None)

    async def first_waits(*args: Any, **kwargs: Any) -> Any:
        if not held:
            held.append(True)
            await release.wait()
        assert real is not None
        return await real(*args, **kwargs)

    monkeypatch.setattr(run_store, "with_feed_position", first_waits, raising=False)
    try:
        yield held, release
    finally:
        release.set()


async def test_a_subscriber_not_admitted_in_time_is_told_when_to_come_back(
    db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer is a stream that names its ``retry:`` and ends (with Retry-After):
    an ``EventSource`` reconnects after it, where a 503 makes it stop for good."""
    async with small_server(db_url, clock, admission_timeout=0.3) as (_engine, served):
        [run_id] = await served.trigger(1)
        with first_state_held(monkeypatch) as (held, release):
            first = asyncio.create_task(subscribe(served.http, run_id))
            await wait_for_async(lambda: bool(held), timeout=10, what="the first state begun")
            turned_away = await served.http.get(
                f"/api/v1/realtime/runs/{run_id}", headers={"Accept": "text/event-stream"}
            )
            assert turned_away.status_code == 200
            assert turned_away.headers["content-type"].startswith("text/event-stream")
            assert turned_away.headers["Retry-After"] == "1"
            lines = turned_away.text.splitlines()
            assert lines[0] == "retry: 1000" and "retry later" in lines[1], lines
            parser = Parser()
            assert [e for e in map(parser.line, lines) if e is not None] == []
            assert parser.retry == 1.0
            release.set()
            await run_to_completion(served)
            status, seen = await asyncio.wait_for(first, 30)
        assert status == 200 and seen[0] == "QUEUED" and seen[-2:] == ["COMPLETED", "end"]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_the_sdk_comes_back_after_a_busy_answer_and_sees_the_run_to_its_end(
    db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, use_async: bool
) -> None:
    """``runs.subscribe`` turned away waits the ``retry:`` it was told (1 s), not
    its own tenth of a second, then reads the run to its end."""
    async with small_server(db_url, clock, admission_timeout=0.3) as (_engine, served):
        [run_id] = await served.trigger(1)
        loop = asyncio.get_running_loop()
        answers: list[tuple[float, float | None]] = []  # (when, the wait it asked)
        busy = asyncio.Event()
        real_busy = sse._busy

        def noticed(response: httpx.Response) -> float | None:
            asked = real_busy(response)
            answers.append((time.monotonic(), asked))
            if asked is not None:
                loop.call_soon_threadsafe(busy.set)
            return asked

        monkeypatch.setattr(sse, "_busy", noticed)
        client = Triggerfish(api_url=served.url, secret_key=served.key)
        with first_state_held(monkeypatch) as (held, release):
            first = asyncio.create_task(subscribe(served.http, run_id))
            await wait_for_async(lambda: bool(held), timeout=10, what="the first state begun")
            if use_async:
                reading = asyncio.create_task(_statuses_async(client, run_id))
            else:
                reading = asyncio.create_task(asyncio.to_thread(_statuses, client, run_id))
            await asyncio.wait_for(busy.wait(), 30)
            release.set()
            await run_to_completion(served)
            statuses = await asyncio.wait_for(reading, 30)
            await asyncio.wait_for(first, 30)
        await asyncio.to_thread(client.close)
        await client.aclose()
        assert statuses[-1] == "COMPLETED" and len(statuses) == len(set(statuses)), statuses
        [(turned_away, asked), (came_back, asked_again)] = answers
        assert asked == 1.0 and asked_again is None, answers
        assert came_back - turned_away >= 0.9, answers


def _statuses(client: Triggerfish, run_id: str) -> list[str]:
    return [e.status for e in client.runs.subscribe(run_id) if e.status is not None]


async def _statuses_async(client: Triggerfish, run_id: str) -> list[str]:
    return [e.status async for e in client.runs.subscribe_async(run_id) if e.status is not None]


#: a browser's own EventSource on a run's stream: resolves with the statuses it
#: saw when the stream ends, or with ``closed`` when the browser gave up on it
EVENT_SOURCE = """(url) => new Promise((resolve) => {
  const seen = [];
  const source = new EventSource(url);
  const status = (e) => { const s = JSON.parse(e.data).data.status; if (s) seen.push(s); };
  source.addEventListener("snapshot", status);
  source.addEventListener("change", status);
  source.addEventListener("end", () => { source.close(); resolve({seen, closed: false}); });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) resolve({seen, closed: true});
  };
})"""


def _in_chromium(page_url: str, stream_url: str) -> dict[str, Any]:
    with chromium() as browser:
        page = browser.new_page()
        page.goto(page_url)
        result: dict[str, Any] = page.evaluate(EVENT_SOURCE, stream_url)
        return result


@pytest.mark.browser
async def test_a_browser_s_event_source_turned_away_comes_back_and_sees_the_run_end(
    db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chromium's EventSource, with a public token in the query string as a web
    page has it, is turned away while the gate is full: it connects again after
    the ``retry:`` it was given and follows the run to its end (a 503 would have
    closed it for good)."""
    async with small_server(db_url, clock, admission_timeout=0.3) as (_engine, served):
        [run_id] = await served.trigger(1)
        made = await served.http.post(
            "/api/v1/auth/public-tokens", json={"scopes": [f"read:runs:{run_id}"]}
        )
        assert made.status_code == 200, made.text
        turned_away: list[bool] = []
        real = realtime._come_back_later

        def counted(busy: ServerBusy) -> Any:
            turned_away.append(True)
            return real(busy)

        monkeypatch.setattr(realtime, "_come_back_later", counted)
        with first_state_held(monkeypatch) as (held, release):
            first = asyncio.create_task(subscribe(served.http, run_id))
            await wait_for_async(lambda: bool(held), timeout=10, what="the first state begun")
            stream = f"/api/v1/realtime/runs/{run_id}?token={made.json()['token']}"
            browsing = asyncio.create_task(
                asyncio.to_thread(_in_chromium, served.url + "/healthz", stream)
            )
            await wait_for_async(lambda: bool(turned_away), timeout=60, what="a busy answer")
            release.set()
            await run_to_completion(served)
            seen = await asyncio.wait_for(browsing, 60)
            await asyncio.wait_for(first, 30)
        assert not seen["closed"] and seen["seen"][-1] == "COMPLETED", seen


async def run_to_completion(served: Served) -> None:
    [claimed] = await served.api.dequeue(served.worker_id, 1, 5, start=1)
    report = CompletionReport(claimed.job.run_id, claimed.job.attempt_id, Succeeded(1))
    await served.api.reports([], [report], give_up_after=30)
    assert await served.status(claimed.job.run_id) == "COMPLETED"
