"""The walks of the run history (the run counters of ``/metrics``, the export of
finished runs' spans, the failures alert rules watch) on PostgreSQL, where
history ids come from a sequence: a status change that took id N and commits
after one that took N+1 is counted, exported and alerted on once it committed,
never skipped and never twice. SQLite has one writer at a time and no such late
commits (its walks take the same path: the other tests of ``tests/observability``
run it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import text

from tests import support
from tests.observability.otlp import http_receiver
from tests.observability.test_export_once import _sender
from tests.observability.test_metrics import _scrape, _value
from tests.support.in_process import bare_worker, trigger_run
from triggerfish._domain.traces import run_span_id
from triggerfish.engine import Engine
from triggerfish.engine.alerts import RuleSpec
from triggerfish.engine.resources import ManualClock

FINISHED = "triggerfish_runs_finished_total"


class _LateFinish:
    """A run finished in a transaction of another connection that stays open: its
    history row holds an id below those written meanwhile."""

    def __init__(self, conn: Any, tx: Any, event_id: int) -> None:
        self.conn, self.tx, self.event_id = conn, tx, event_id


@asynccontextmanager
async def _finished_uncommitted(
    db_url: str, run_id: str, status: str = "CANCELED"
) -> AsyncIterator[_LateFinish]:
    conn = await asyncpg.connect(db_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        tx = conn.transaction()
        await tx.start()
        now = "(now() AT TIME ZONE 'utc')"
        await conn.execute(
            f"UPDATE runs SET status = $2, finished_at = {now} WHERE id = $1", run_id, status
        )
        event_id = await conn.fetchval(
            "INSERT INTO run_events (run_id, from_status, to_status, at) "
            f"VALUES ($1, 'QUEUED', $2, {now}) RETURNING id",
            run_id,
            status,
        )
        yield _LateFinish(conn, tx, int(event_id))
    finally:
        await conn.close()


async def _queued_runs(engine: Engine, n: int) -> tuple[str, list[str]]:
    env = await engine.environments.by_slug("dev")
    await bare_worker(engine, env.id)
    return env.id, [await trigger_run(engine, env.id, "t") for _ in range(n)]


async def _newest_event(engine: Engine) -> int:
    async with engine.res.db.read() as conn:
        return int((await conn.execute(text("SELECT max(id) FROM run_events"))).scalar_one())


async def _canceled(engine: Engine) -> float:
    return _value(await _scrape(engine), FINISHED, status="CANCELED")


async def test_a_status_change_that_commits_late_is_counted_once(
    pg_db_url: str, clock: ManualClock
) -> None:
    async with support.started_engine(pg_db_url, clock) as engine:
        env_id, (late, early, third) = await _queued_runs(engine, 3)
        assert await _canceled(engine) == 0  # the walk is past the triggers
        async with _finished_uncommitted(pg_db_url, late) as held:
            await engine.runs.cancel(env_id, early)  # commits an id above the held one
            assert held.event_id < await _newest_event(engine)
            await _scrape(engine)  # a walk while the held id is uncommitted
            await held.tx.commit()
        assert await _canceled(engine) == 2
        assert await _canceled(engine) == 2
        # an id whose transaction rolled back holds the walk up only until a look
        # after the one that first missed it
        async with _finished_uncommitted(pg_db_url, third) as held:
            await held.tx.rollback()
        async with _finished_uncommitted(pg_db_url, third) as held:
            await held.tx.commit()
        await _scrape(engine)  # first sees the rolled-back id missing
        assert await _canceled(engine) == 3


async def test_a_run_whose_final_status_commits_late_is_exported_once(
    pg_db_url: str, clock: ManualClock
) -> None:
    async with support.started_engine(pg_db_url, clock) as engine:
        env_id, (late, early) = await _queued_runs(engine, 2)
        with http_receiver() as (endpoint, received):
            send = _sender(endpoint)
            await engine.traces.export_finished(send)  # the position starts here
            async with _finished_uncommitted(pg_db_url, late) as held:
                await engine.runs.cancel(env_id, early)
                assert held.event_id < await _newest_event(engine)
                exported = await engine.traces.export_finished(send)  # while it is uncommitted
                await held.tx.commit()
            exported += await engine.traces.export_finished(send)
            assert exported == 2
            assert await engine.traces.export_finished(send) == 0
        counts = Counter(s.span_id for s in received.snapshot())
        assert counts == Counter({run_span_id(late): 1, run_span_id(early): 1})


async def test_a_failure_that_commits_late_raises_its_alert(
    pg_db_url: str, clock: ManualClock
) -> None:
    async with support.started_engine(pg_db_url, clock) as engine:
        env_id, (late, early) = await _queued_runs(engine, 2)
        spec = RuleSpec("failures", "RUN_FAILED", "WEBHOOK", "http://127.0.0.1:9/hook", {})
        await engine.alerts.add_rule(env_id, spec)
        await engine.alerts.evaluate()  # starts watching
        async with _finished_uncommitted(pg_db_url, late, "FAILED") as held:
            async with _finished_uncommitted(pg_db_url, early, "FAILED") as other:
                await other.tx.commit()
            assert held.event_id < other.event_id
            raised = await engine.alerts.evaluate()  # while the first is uncommitted
            await held.tx.commit()
        raised += await engine.alerts.evaluate()
        assert raised == 2
        assert await engine.alerts.evaluate() == 0
