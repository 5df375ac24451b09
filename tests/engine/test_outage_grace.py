"""Leases after a database outage (issue 17, defects 1 and 12): an expired lease gets
one heartbeat timeout of grace from the reconnection, and the outage is logged once."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from tests.support import wait_for_async
from tests.support.in_process import bare_worker, outage, run_record, trigger_run
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Failure
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import StaleTransition, StoreUnavailable


async def _executing(engine: Engine) -> tuple[str, str, str, str]:
    env_id = (await engine.environments.by_slug("dev")).id
    worker = await bare_worker(engine, env_id)
    run_id = await trigger_run(engine, env_id, "t")
    [row] = await engine.dequeue.claim(worker, 1)
    await engine.attempts.start(run_id, row.claimed_attempt_id)
    return env_id, worker.id, run_id, row.claimed_attempt_id


async def _outage_longer_than_the_timeout(engine: Engine, clock: ManualClock) -> None:
    timeout = engine.res.settings.heartbeat_timeout
    clock.advance(1)
    with outage(engine):
        for _ in range(5):
            assert await engine.maintenance.tick() is None
            clock.advance(timeout / 3)
    assert await engine.maintenance.tick() is not None  # back: the first sweep succeeds


async def test_a_lease_that_ran_out_during_an_outage_is_not_reclaimed_at_once(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker_id, run_id, attempt_id = await _executing(engine)
    await _outage_longer_than_the_timeout(engine, clock)
    assert (await run_record(engine, env_id, run_id)).status == "EXECUTING"
    # the worker's heartbeat and its report land in the grace
    clock.advance(1)
    assert await engine.attempts.heartbeat(worker_id, [attempt_id]) == []
    await engine.maintenance.tick()
    await engine.attempts.succeed(run_id, attempt_id, "done")
    run = await run_record(engine, env_id, run_id)
    assert run.status == "COMPLETED" and run.attempt_count == 1


async def test_after_the_grace_a_silent_worker_loses_its_run(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, _worker_id, run_id, attempt_id = await _executing(engine)
    await _outage_longer_than_the_timeout(engine, clock)
    clock.advance(engine.res.settings.heartbeat_timeout - 1)
    await engine.maintenance.tick()
    assert (await run_record(engine, env_id, run_id)).status == "EXECUTING"  # still in grace
    clock.advance(2)
    await engine.maintenance.tick()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "QUEUED" and run.failure_count == 1  # WorkerLost, a retry spent
    with pytest.raises(StaleTransition):  # a late report from the reclaimed attempt
        await engine.attempts.succeed(run_id, attempt_id, "late")


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    engine: Engine, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await _outage_longer_than_the_timeout(engine, clock)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(" (")[0].split(";")[0] for r in records] == [
        f"database unreachable since {records[0].getMessage().split('since ')[1].split(' ')[0]}",
        "database back after 50 s",
    ], [r.getMessage() for r in records]
    assert all(r.exc_info is None for r in records)


async def test_a_reclaim_never_takes_a_lease_renewed_since_it_looked(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker_id, run_id, attempt_id = await _executing(engine)
    clock.advance(engine.res.settings.heartbeat_timeout + 1)
    looked_at = clock.now()  # the sweep read this lease as expired ...
    await engine.attempts.heartbeat(worker_id, [attempt_id])  # ... and then it was renewed
    failure = Failure(kind="CRASH", error={"name": "WorkerLost", "message": "", "stack_trace": ""})
    with pytest.raises(StaleTransition):
        await engine.attempts.fail(run_id, attempt_id, failure, lease_before=looked_at)
    assert (await run_record(engine, env_id, run_id)).status == "EXECUTING"


async def test_alert_evaluation_failing_through_an_outage_logs_a_line_a_minute(
    engine: Engine, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="triggerfish.alerts")
    with outage(engine):
        for _ in range(300):  # 150 s of passes, two a second
            assert not await engine.alerts.tick()
            clock.advance(0.5)
    assert await engine.alerts.tick()
    records = [r for r in caplog.records if r.name == "triggerfish.alerts"]
    assert [r.getMessage().split(" (")[0] for r in records] == [
        "alert evaluation failed",
        "alert evaluation still failing: 120 more failure(s) in the last 60 s",
        "alert evaluation still failing: 120 more failure(s) in the last 60 s",
        "alert evaluation works again after 150 s and 300 failure(s)",
    ], [r.getMessage() for r in records]
    assert "StoreUnavailable" in records[1].getMessage()
    assert all(r.exc_info is None for r in records)  # an unreachable store: no traceback


async def test_a_sweep_failing_otherwise_logs_its_traceback_once(
    engine: Engine,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken() -> int:
        raise RuntimeError("a bug")

    caplog.set_level(logging.INFO, logger="triggerfish.engine.maintenance")
    monkeypatch.setattr(engine.maintenance, "promote_delayed", broken)
    for _ in range(10):
        assert await engine.maintenance.tick() is None
        clock.advance(0.5)
    monkeypatch.undo()
    assert await engine.maintenance.tick() is not None
    records = [r for r in caplog.records if r.name == "triggerfish.engine.maintenance"]
    assert [r.getMessage() for r in records] == [
        "maintenance sweep failed (RuntimeError: a bug); trying again",
        "maintenance sweep works again after 5 s and 10 failure(s)",
    ]
    assert records[0].exc_info is not None and records[1].exc_info is None


async def test_span_export_failing_through_an_outage_logs_once(
    engine: Engine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes = 0

    async def unreachable(emit: object) -> int:
        nonlocal passes
        passes += 1
        raise StoreUnavailable("the database connection failed (ConnectionRefusedError)")

    caplog.set_level(logging.INFO, logger="triggerfish.traces")
    monkeypatch.setattr(engine.traces, "export_finished", unreachable)
    exporting = asyncio.create_task(engine.traces.export_forever(lambda spans: True))
    try:
        await wait_for_async(lambda: passes >= 10, 30, what="ten failed passes")
    finally:
        exporting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await exporting
    records = [r.getMessage() for r in caplog.records if r.name == "triggerfish.traces"]
    assert records == [
        "exporting finished runs' spans failed (StoreUnavailable: the database connection "
        "failed (ConnectionRefusedError)); trying again"
    ]
