"""Retention (issue 17, defect 11): finished runs and all that hangs off them are
deleted in bounded batches once their environment's retention has passed."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.in_process import in_process_worker, run_record
from triggerfish import retry, step, task, wait
from triggerfish._domain.times import to_datetime
from triggerfish.engine import Engine, maintenance
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.store.retention import AGED_TABLES, RUN_TABLES
from triggerfish.store.tables import (
    alert_deliveries,
    events,
    runs,
    waitpoints,
    webhook_deliveries,
)

FAST = retry(max_attempts=1, min_delay=0, max_delay=0, jitter=0)
DAY = 86400.0


def _registry() -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="work", retry=FAST)
        def work(payload: Any) -> Any:
            token = wait.create_token()
            wait.complete_token(token, {"ok": 1})
            return step.run("s", lambda: payload)

        @task(id="waits", retry=FAST)
        def waits(payload: Any) -> Any:
            return wait.for_token(wait.create_token()).output

    return registry


async def _rows_of(engine: Engine, run_id: str) -> dict[str, int]:
    async with engine.res.db.read() as conn:
        counts = {}
        for table, column in [*RUN_TABLES, (runs, "id"), (waitpoints, "owner_run_id")]:
            stmt = select(func.count()).select_from(table).where(table.c[column] == run_id)
            counts[table.name] = int((await conn.execute(stmt)).scalar() or 0)
    return counts


async def _trigger(engine: Engine, env_id: str, task_id: str, tags: list[str]) -> str:
    return (await engine.enqueue.trigger(env_id, TriggerRequest(task_id, 1, tags=tags))).id


async def test_finished_runs_past_retention_go_with_everything_hanging_off_them(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker = await in_process_worker(engine, _registry())
    old = await _trigger(engine, env_id, "work", ["t"])
    waiting = await _trigger(engine, env_id, "waits", [])
    await worker.run_until_idle()
    await engine.runs.append_logs(
        env_id, (await run_record(engine, env_id, old)).current_attempt_id, [{"message": "hi"}]
    )
    await engine.events.send(env_id, "e", {}, "event-1")
    rows = await _rows_of(engine, old)
    assert all(rows[t] > 0 for t in ("runs", "attempts", "run_logs", "run_journal", "run_tags"))
    clock.advance(29 * DAY)
    await engine.maintenance.sweep()
    assert (await _rows_of(engine, old))["runs"] == 1  # not yet
    clock.advance(2 * DAY)
    recent = await _trigger(engine, env_id, "work", [])
    await worker.run_until_idle()
    swept = await engine.maintenance.sweep()
    assert swept["runs_purged"] == 1
    assert set((await _rows_of(engine, old)).values()) == {0}
    assert (await run_record(engine, env_id, waiting)).status == "WAITING"  # not finished
    assert (await run_record(engine, env_id, recent)).status == "COMPLETED"
    async with engine.res.db.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(events))).scalar() == 0


async def test_an_environment_keeps_runs_as_long_as_it_says(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker = await in_process_worker(engine, _registry())
    run_id = await _trigger(engine, env_id, "work", [])
    await worker.run_until_idle()
    await engine.maintenance.set_retention(env_id, 60)
    assert await engine.maintenance.retention(env_id) == (60, True)
    clock.advance(31 * DAY)
    await engine.maintenance.sweep()
    assert (await _rows_of(engine, run_id))["runs"] == 1
    clock.advance(30 * DAY)
    await engine.maintenance.sweep()
    assert (await _rows_of(engine, run_id))["runs"] == 0


async def test_the_purge_goes_in_bounded_batches(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance, "RETENTION_BATCH", 2)
    env_id, worker = await in_process_worker(engine, _registry())
    for _ in range(5):
        await _trigger(engine, env_id, "work", [])
    await worker.run_until_idle()
    clock.advance(31 * DAY)
    assert [(await engine.maintenance.sweep())["runs_purged"] for _ in range(4)] == [2, 2, 1, 0]


def test_every_table_keyed_by_a_run_is_purged_with_it() -> None:
    """A new table with a ``run_id`` column must join ``RUN_TABLES``, or its rows
    outlive their run forever."""
    from triggerfish.store import tables
    from triggerfish.store.retention import RUN_TABLES

    listed = {table.name for table, _ in RUN_TABLES} | {t.name for t in AGED_TABLES}
    keyed = {t.name for t in tables.metadata.sorted_tables if "run_id" in t.c} - {"runs"}
    assert keyed <= listed, f"not purged with their runs: {sorted(keyed - listed)}"


async def _delivery_ids(engine: Engine) -> dict[str, set[str]]:
    async with engine.res.db.read() as conn:
        return {
            table.name: set((await conn.execute(select(table.c.id))).scalars())
            for table in AGED_TABLES
        }


async def test_webhook_and_alert_deliveries_go_once_past_the_retention(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = (await engine.environments.by_slug("dev")).id
    other_id = (await engine.environments.by_slug("prod")).id
    await engine.maintenance.set_retention(other_id, 90)

    async def deliveries(suffix: str, env: str) -> None:
        at = to_datetime(clock.now())
        async with engine.res.db.write() as conn:
            await conn.execute(
                webhook_deliveries.insert().values(
                    id=f"whd_{suffix}",
                    endpoint_id="whe_1",
                    environment_id=env,
                    event_id=f"evt-{suffix}",
                    event_name="github.push",
                    headers={},
                    payload={},
                    run_ids=[],
                    errors=[],
                    outcome="first",
                    created_at=at,
                )
            )
            await conn.execute(
                alert_deliveries.insert().values(
                    id=f"ald_{suffix}",
                    environment_id=env,
                    rule_id="alr_1",
                    dedup_key=f"key-{suffix}",
                    status="SENT",
                    payload={},
                    count=1,
                    attempts=1,
                    created_at=at,
                )
            )

    await deliveries("old", env_id)
    await deliveries("kept-longer", other_id)
    clock.advance(20 * DAY)
    await deliveries("recent", env_id)
    clock.advance(11 * DAY)  # the first ones are 31 days old, the recent one 11
    await engine.maintenance.sweep()
    assert await _delivery_ids(engine) == {
        "webhook_deliveries": {"whd_recent", "whd_kept-longer"},
        "alert_deliveries": {"ald_recent", "ald_kept-longer"},
    }


def test_every_table_of_deliveries_goes_by_age() -> None:
    """A new table of deliveries must join ``AGED_TABLES`` (or be keyed by a run),
    or its rows are kept forever."""
    from triggerfish.store import tables

    aged = {table.name for table in AGED_TABLES}
    deliveries = {t.name for t in tables.metadata.sorted_tables if t.name.endswith("deliveries")}
    assert deliveries <= aged, f"never purged: {sorted(deliveries - aged)}"
    for table in AGED_TABLES:
        assert {"id", "environment_id", "created_at"} <= set(table.c.keys()), table.name
        indexed = [tuple(c.name for c in index.columns) for index in table.indexes]
        assert ("environment_id", "created_at") in indexed, f"{table.name}: no index to sweep"
