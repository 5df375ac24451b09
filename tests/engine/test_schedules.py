"""Schedules on the real store (SQLite and PostgreSQL), driven with a manual clock."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.times import iso_from_epoch
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.engine.schedules import ScheduleChanges, ScheduleInput
from triggerfish.errors import InvalidSchedule, ScheduleNotFound, StoreUnavailable, TaskNotFound

NO_RETRY = {"max_attempts": 1, "factor": 1, "min_delay": 0, "max_delay": 0, "jitter": 0}
START = datetime(2026, 1, 5, 8, 59, 30, tzinfo=UTC).timestamp()  # a Monday


def manifest(
    task_id: str, *, cron: str | None = None, tz: str = "UTC", scheduled: bool = True
) -> dict[str, Any]:
    return {
        "id": task_id,
        "retry": NO_RETRY,
        "machine": "small-1x",
        "queue": {"name": f"task/{task_id}", "concurrency_limit": None},
        "payload_schema": None,
        "max_duration": None,
        "schedule": {"cron": cron, "timezone": tz} if scheduled else None,
    }


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


async def register(engine: Engine, *tasks: dict[str, Any], version: str = "v1") -> str:
    env = await engine.environments.by_slug("dev")
    await engine.workers.register(
        env.id, version=version, name="w", concurrency=1, tasks=list(tasks)
    )
    return env.id


async def scheduled_runs(engine: Engine, env_id: str, task_id: str) -> list[dict[str, Any]]:
    """Payloads of the task's runs, oldest first."""
    rows, _, _ = await engine.runs.page(
        env_id, RunFilter(task_ids=[task_id]), size=100, after=None, before=None
    )
    payloads = []
    for row in reversed(rows):
        detail = await engine.runs.retrieve(env_id, row.id)
        payloads.append(detail.run.payload)
    return payloads


def utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def set_time(clock: ManualClock, when: datetime) -> None:
    clock.advance(when.timestamp() - clock.now())


# -- imperative --------------------------------------------------------------------------


async def test_imperative_schedule_fires_once_per_slot_with_its_payload(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = await register(engine, manifest("sync"))
    info = await engine.schedules.create(
        env_id,
        ScheduleInput(
            "sync",
            "*/15 * * * *",
            "Europe/Paris",
            external_id="customer_42",
            deduplication_key="customer_42-sync",
        ),
    )
    assert info.id.startswith("sched_") and info.type == "IMPERATIVE" and info.active
    assert info.next_run == datetime(2026, 1, 5, 9, 0, tzinfo=UTC).timestamp()
    assert await engine.schedules.fire_due() == 0  # not due yet

    clock.advance(30)  # 09:00:00 UTC, 10:00 in Paris
    assert await engine.schedules.fire_due() == 1
    assert await engine.schedules.fire_due() == 0  # the slot is spent
    clock.advance(minutes=15)
    assert await engine.schedules.fire_due() == 1

    first, second = await scheduled_runs(engine, env_id, "sync")
    assert first == {
        "scheduleId": info.id,
        "type": "IMPERATIVE",
        "timestamp": "2026-01-05T09:00:00.000Z",
        "externalId": "customer_42",
        "timezone": "Europe/Paris",
        "upcoming": [
            "2026-01-05T09:15:00.000Z",
            "2026-01-05T09:30:00.000Z",
            "2026-01-05T09:45:00.000Z",
            "2026-01-05T10:00:00.000Z",
            "2026-01-05T10:15:00.000Z",
        ],
    }
    assert second["timestamp"] == "2026-01-05T09:15:00.000Z"
    assert second["lastTimestamp"] == "2026-01-05T09:00:00.000Z"
    again = await engine.schedules.retrieve(env_id, "customer_42-sync")  # by dedup key
    assert again.id == info.id and again.last_run == clock.now()


async def test_scheduled_runs_are_ordinary_runs_in_the_task_queue(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = await register(engine, manifest("sync"))
    await engine.schedules.create(env_id, ScheduleInput("sync", "* * * * *"))
    clock.advance(30)
    await engine.schedules.fire_due()
    rows, _, _ = await engine.runs.page(
        env_id, RunFilter(task_ids=["sync"]), size=10, after=None, before=None
    )
    [run] = rows
    assert run.status == "QUEUED" and run.queue_name == "task/sync"
    # one run per slot by construction: the slot is the idempotency key
    assert run.idempotency_key is not None
    assert run.idempotency_key.startswith("schedule:sched_")


async def test_schedule_for_a_task_that_is_not_scheduled_is_refused(engine: Engine) -> None:
    env_id = await register(engine, manifest("plain", scheduled=False))
    with pytest.raises(InvalidSchedule, match="'plain' is not a scheduled task") as exc:
        await engine.schedules.create(env_id, ScheduleInput("plain", "0 9 * * *"))
    assert exc.value.status_code == 422
    with pytest.raises(TaskNotFound, match="'nope'"):
        await engine.schedules.create(env_id, ScheduleInput("nope", "0 9 * * *"))


@pytest.mark.parametrize(
    ("cron", "tz", "needle"),
    [
        ("0 9 * *", "UTC", "cron: cron expression '0 9 \\* \\*' has 4 fields"),
        ("0 24 * * *", "UTC", "cron: .*bad hour"),
        ("0 9 * * *", "Europe/Atlantis", "timezone: unknown time zone 'Europe/Atlantis'"),
        ("*/5 * * * * *", "UTC", "has 6 fields"),  # seconds are for tests only
    ],
)
async def test_invalid_cron_or_timezone_is_refused_at_create(
    engine: Engine, cron: str, tz: str, needle: str
) -> None:
    env_id = await register(engine, manifest("sync"))
    with pytest.raises(InvalidSchedule, match=needle):
        await engine.schedules.create(env_id, ScheduleInput("sync", cron, tz))


async def test_same_deduplication_key_updates_instead_of_duplicating(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = await register(engine, manifest("sync"))
    first = await engine.schedules.create(
        env_id, ScheduleInput("sync", "0 * * * *", deduplication_key="c1", external_id="a")
    )
    second = await engine.schedules.create(
        env_id, ScheduleInput("sync", "30 * * * *", deduplication_key="c1", external_id="b")
    )
    same = await engine.schedules.create(
        env_id, ScheduleInput("sync", "30 * * * *", deduplication_key="c1", external_id="b")
    )
    other = await engine.schedules.create(
        env_id, ScheduleInput("sync", "0 * * * *", deduplication_key="c2")
    )
    assert first.id == second.id == same.id != other.id
    assert second.cron == "30 * * * *" and second.external_id == "b"
    assert second.next_run == datetime(2026, 1, 5, 9, 30, tzinfo=UTC).timestamp()
    infos, total = await engine.schedules.page(env_id, page=1, per_page=10)
    assert total == 2 and [i.id for i in infos] == [first.id, other.id]


async def test_concurrent_creates_with_one_deduplication_key_make_one_schedule(
    engine: Engine,
) -> None:
    env_id = await register(engine, manifest("sync"))
    made = await asyncio.gather(
        *(
            engine.schedules.create(
                env_id, ScheduleInput("sync", f"{m} * * * *", deduplication_key="k")
            )
            for m in range(5)
        )
    )
    assert len({m.id for m in made}) == 1
    assert (await engine.schedules.page(env_id, page=1, per_page=10))[1] == 1


async def test_update_delete_activate_deactivate(engine: Engine, clock: ManualClock) -> None:
    env_id = await register(engine, manifest("sync"), manifest("other"))
    info = await engine.schedules.create(env_id, ScheduleInput("sync", "0 * * * *"))
    updated = await engine.schedules.update(
        env_id,
        info.id,
        ScheduleChanges.of(
            task_id="other", cron="*/10 * * * *", timezone="Asia/Tokyo", external_id="x"
        ),
    )
    assert (updated.task_id, updated.cron, updated.timezone) == (
        "other",
        "*/10 * * * *",
        "Asia/Tokyo",
    )
    assert updated.next_run == datetime(2026, 1, 5, 9, 0, tzinfo=UTC).timestamp()

    off = await engine.schedules.deactivate(env_id, info.id)
    assert not off.active and off.next_run is None
    clock.advance(hours=2)
    assert await engine.schedules.fire_due() == 0  # inactive: nothing fires, nothing piles up
    on = await engine.schedules.activate(env_id, info.id)
    assert on.active and on.next_run == datetime(2026, 1, 5, 11, 0, tzinfo=UTC).timestamp()
    assert await engine.schedules.fire_due() == 0  # slots missed while inactive never run

    assert await engine.schedules.delete(env_id, info.id) == info.id
    with pytest.raises(ScheduleNotFound):
        await engine.schedules.retrieve(env_id, info.id)
    with pytest.raises(ScheduleNotFound):
        await engine.schedules.delete(env_id, info.id)


# -- missed slots ----------------------------------------------------------------------


async def test_missed_slots_after_downtime_run_the_latest_once(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = await register(engine, manifest("sync"))
    await engine.schedules.create(env_id, ScheduleInput("sync", "*/15 * * * *"))
    clock.advance(hours=5, minutes=7)  # 20 slots passed while no server ran; now 14:06:30
    assert await engine.schedules.fire_due() == 1
    assert await engine.schedules.fire_due() == 0
    [payload] = await scheduled_runs(engine, env_id, "sync")
    assert payload["timestamp"] == "2026-01-05T14:00:00.000Z"
    info = (await engine.schedules.page(env_id, page=1, per_page=1))[0][0]
    assert info.next_run == datetime(2026, 1, 5, 14, 15, tzinfo=UTC).timestamp()


async def test_skip_policy_drops_slots_later_than_the_grace(db_url: str) -> None:
    clock = ManualClock(START)
    engine = Engine.create(
        ServerSettings(
            database_url=db_url, schedule_missed_slots="skip", schedule_misfire_grace=120
        ),
        clock=clock,
    )
    await engine.start(background=False)
    try:
        await engine.environments.bootstrap()
        env_id = await register(engine, manifest("sync"))
        await engine.schedules.create(env_id, ScheduleInput("sync", "*/15 * * * *"))
        clock.advance(minutes=13)  # 09:12:30: the 09:00 slot is 12.5 minutes late
        assert await engine.schedules.fire_due() == 0
        clock.advance(minutes=3)  # 09:15:30: on time again
        assert await engine.schedules.fire_due() == 1
        [payload] = await scheduled_runs(engine, env_id, "sync")
        assert payload["timestamp"] == "2026-01-05T09:15:00.000Z"
    finally:
        await engine.close()


# -- daylight saving -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "cron", "day_before", "expected"),
    [
        # spring forward: 02:30 does not exist on 2026-03-08 in New York
        (
            "America/New_York",
            "30 2 * * *",
            (2026, 3, 7),
            ["03-07 02:30", "03-08 03:00", "03-09 02:30"],
        ),
        # fall back: 01:30 happens twice on 2026-11-01 in New York
        (
            "America/New_York",
            "30 1 * * *",
            (2026, 10, 31),
            ["10-31 01:30", "11-01 01:30", "11-02 01:30"],
        ),
        # London springs forward at 01:00 on 2026-03-29 and falls back on 2026-10-25
        (
            "Europe/London",
            "30 1 * * *",
            (2026, 3, 28),
            ["03-28 01:30", "03-29 02:00", "03-30 01:30"],
        ),
        (
            "Europe/London",
            "30 1 * * *",
            (2026, 10, 24),
            ["10-24 01:30", "10-25 01:30", "10-26 01:30"],
        ),
    ],
)
async def test_daily_schedule_fires_once_a_day_across_dst(
    engine: Engine,
    clock: ManualClock,
    zone: str,
    cron: str,
    day_before: tuple[int, int, int],
    expected: list[str],
) -> None:
    env_id = await register(engine, manifest("daily"))
    tz = ZoneInfo(zone)
    set_time(clock, datetime(*day_before, 0, 0, tzinfo=tz))
    await engine.schedules.create(env_id, ScheduleInput("daily", cron, zone))
    for _ in range(3 * 24 * 6):  # three days in 10-minute sweeps
        clock.advance(minutes=10)
        await engine.schedules.fire_due()
    payloads = await scheduled_runs(engine, env_id, "daily")
    fired = [
        datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).astimezone(tz)
        for p in payloads
    ]
    assert [f.strftime("%m-%d %H:%M") for f in fired] == expected


# -- replicas --------------------------------------------------------------------------


async def test_two_replicas_fire_each_slot_exactly_once(
    engine: Engine, clock: ManualClock, db_url: str
) -> None:
    """Two engines (own connection pools, as two server processes) sweep the same slots."""
    replica = Engine.create(ServerSettings(database_url=db_url), clock=clock)
    await replica.start(background=False)
    try:
        env_id = await register(engine, manifest("sync"))
        made = [
            await engine.schedules.create(
                env_id, ScheduleInput("sync", "* * * * *", external_id=str(i))
            )
            for i in range(3)
        ]
        for _ in range(10):
            clock.advance(minutes=1)
            counts = await asyncio.gather(
                engine.schedules.fire_due(),
                replica.schedules.fire_due(),
                engine.schedules.fire_due(),
                replica.schedules.fire_due(),
            )
            assert sum(counts) == 3  # one run per schedule per slot, whoever fired it
        payloads = await scheduled_runs(engine, env_id, "sync")
        assert len(payloads) == 30
        slots = {(p["scheduleId"], p["timestamp"]) for p in payloads}
        assert len(slots) == 30 and {s for s, _ in slots} == {m.id for m in made}
    finally:
        await replica.close()


async def test_a_stale_sweep_after_the_slot_was_claimed_creates_nothing(
    engine: Engine, clock: ManualClock
) -> None:
    """A replica that read the due row before another fired it only finds the same run."""
    from triggerfish.store import schedules as schedule_store

    env_id = await register(engine, manifest("sync"))
    await engine.schedules.create(env_id, ScheduleInput("sync", "* * * * *"))
    clock.advance(minutes=1)
    async with engine.res.db.read() as conn:
        [stale_row] = await schedule_store.due(conn, clock.now(), 10)
    assert await engine.schedules.fire_due() == 1
    assert await engine.schedules._fire(stale_row, clock.now()) == 0
    assert len(await scheduled_runs(engine, env_id, "sync")) == 1


# -- declarative -----------------------------------------------------------------------


async def test_declarative_schedule_follows_the_registering_workers_code(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = await register(engine, manifest("report", cron="0 9 * * *", tz="America/New_York"))
    [info], _ = await engine.schedules.page(env_id, page=1, per_page=10)
    assert (info.type, info.task_id, info.cron, info.timezone) == (
        "DECLARATIVE",
        "report",
        "0 9 * * *",
        "America/New_York",
    )
    assert info.next_run == datetime(2026, 1, 5, 14, 0, tzinfo=UTC).timestamp()
    assert info.description == "At 09:00 every day"

    # a restart with the same code keeps the schedule and its next slot
    clock.advance(hours=1)
    await register(engine, manifest("report", cron="0 9 * * *", tz="America/New_York"))
    [same], _ = await engine.schedules.page(env_id, page=1, per_page=10)
    assert same.id == info.id and same.next_run == info.next_run

    # new code changes the cron: same schedule, new timetable
    await register(
        engine, manifest("report", cron="0 7 * * *", tz="America/New_York"), version="v2"
    )
    [changed], _ = await engine.schedules.page(env_id, page=1, per_page=10)
    assert changed.id == info.id and changed.cron == "0 7 * * *"
    assert changed.next_run == datetime(2026, 1, 5, 12, 0, tzinfo=UTC).timestamp()

    # declarative schedules change in code only
    with pytest.raises(InvalidSchedule, match="declarative"):
        await engine.schedules.update(env_id, info.id, ScheduleChanges.of(cron="0 1 * * *"))
    with pytest.raises(InvalidSchedule, match="declarative"):
        await engine.schedules.delete(env_id, info.id)

    # the cron is removed from the code: the schedule goes
    await register(engine, manifest("report"), version="v3")
    assert (await engine.schedules.page(env_id, page=1, per_page=10))[1] == 0


async def test_declarative_schedule_fires_and_keeps_imperative_ones_apart(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = await register(engine, manifest("report", cron="0 9 * * *"))
    await engine.schedules.create(env_id, ScheduleInput("report", "30 9 * * *", external_id="x"))
    clock.advance(minutes=1)
    assert await engine.schedules.fire_due() == 1  # 09:00, declarative
    clock.advance(minutes=30)
    assert await engine.schedules.fire_due() == 1  # 09:30, imperative
    payloads = await scheduled_runs(engine, env_id, "report")
    assert [(p["type"], p["timestamp"][11:16]) for p in payloads] == [
        ("DECLARATIVE", "09:00"),
        ("IMPERATIVE", "09:30"),
    ]


async def test_removed_task_loses_its_schedule_unless_another_worker_still_serves_it(
    engine: Engine, clock: ManualClock
) -> None:
    env = await engine.environments.by_slug("dev")
    cron_task = manifest("report", cron="0 9 * * *")
    await engine.workers.register(env.id, version="a", name="a", concurrency=1, tasks=[cron_task])
    # a second worker pool with other code: the first pool still serves "report"
    await engine.workers.register(
        env.id, version="b", name="b", concurrency=1, tasks=[manifest("other")]
    )
    assert (await engine.schedules.page(env.id, page=1, per_page=10))[1] == 1
    # the first pool is gone (no heartbeat for longer than the timeout)
    clock.advance(engine.res.settings.heartbeat_timeout + 1)
    await engine.workers.register(
        env.id, version="b", name="b2", concurrency=1, tasks=[manifest("other")]
    )
    assert (await engine.schedules.page(env.id, page=1, per_page=10))[1] == 0


async def test_worker_with_an_invalid_declared_cron_is_refused(engine: Engine) -> None:
    env = await engine.environments.by_slug("dev")
    with pytest.raises(InvalidSchedule, match=r"task 'report': cron: .*bad minute"):
        await engine.workers.register(
            env.id,
            version="v1",
            name="w",
            concurrency=1,
            tasks=[manifest("report", cron="99 * * * *")],
        )


async def test_workers_registering_at_once_make_one_declarative_schedule(engine: Engine) -> None:
    """A deploy starts several workers of new code together (concurrent writers on PostgreSQL)."""
    env = await engine.environments.by_slug("dev")
    cron_task = manifest("report", cron="0 9 * * *")
    await asyncio.gather(
        *(
            engine.workers.register(
                env.id, version="v9", name=f"w{i}", concurrency=1, tasks=[cron_task]
            )
            for i in range(6)
        )
    )
    infos, total = await engine.schedules.page(env.id, page=1, per_page=10)
    assert total == 1 and infos[0].task_id == "report"


async def test_a_restarted_server_neither_repeats_nor_skips_a_slot(
    engine: Engine, clock: ManualClock, db_url: str
) -> None:
    env_id = await register(engine, manifest("report", cron="*/10 * * * *"))
    clock.advance(30)
    assert await engine.schedules.fire_due() == 1  # 09:00
    await engine.close()  # the only server stops...
    clock.advance(minutes=5)
    restarted = Engine.create(ServerSettings(database_url=db_url), clock=clock)
    await restarted.start(background=False)
    try:
        # ...and comes back, its worker re-registering the same code
        await register(restarted, manifest("report", cron="*/10 * * * *"))
        assert await restarted.schedules.fire_due() == 0  # 09:00 is not run again
        clock.advance(minutes=5)
        assert await restarted.schedules.fire_due() == 1  # 09:10 on time
        payloads = await scheduled_runs(restarted, env_id, "report")
        assert [p["timestamp"][11:16] for p in payloads] == ["09:00", "09:10"]
        assert payloads[1]["lastTimestamp"] == payloads[0]["timestamp"]
    finally:
        await restarted.close()


async def test_an_update_changes_only_the_fields_it_names(engine: Engine) -> None:
    env_id = await register(engine, manifest("sync"))
    info = await engine.schedules.create(
        env_id, ScheduleInput("sync", "0 9 * * *", "Europe/Paris", external_id="c-1")
    )
    changed = await engine.schedules.update(env_id, info.id, ScheduleChanges.of(cron="0 10 * * *"))
    assert (changed.cron, changed.timezone, changed.external_id, changed.task_id) == (
        "0 10 * * *",
        "Europe/Paris",
        "c-1",
        "sync",
    )
    cleared = await engine.schedules.update(
        env_id, info.id, ScheduleChanges.of(timezone=None, external_id=None)
    )
    assert (cleared.cron, cleared.timezone, cleared.external_id) == ("0 10 * * *", "UTC", None)


async def test_a_schedule_triggered_by_hand_gets_a_slot_payload_and_keeps_its_timetable(
    engine: Engine, clock: ManualClock
) -> None:
    env_id = await register(engine, manifest("sync"), manifest("nightly", cron="0 3 * * *"))
    info = await engine.schedules.create(
        env_id, ScheduleInput("sync", "0 9 * * *", "Asia/Tokyo", external_id="c-1")
    )
    result = await engine.schedules.trigger_now(env_id, info.id)
    [payload] = await scheduled_runs(engine, env_id, "sync")
    assert payload["scheduleId"] == info.id and payload["externalId"] == "c-1"
    assert payload["timestamp"] == iso_from_epoch(clock.now())
    assert payload["timezone"] == "Asia/Tokyo" and payload["upcoming"]
    assert (await engine.schedules.retrieve(env_id, info.id)).next_run == info.next_run
    assert not result.is_cached
    [declarative], _ = await engine.schedules.page(env_id, page=1, per_page=10, task_id="nightly")
    await engine.schedules.trigger_now(env_id, declarative.id)  # declarative ones too
    assert len(await scheduled_runs(engine, env_id, "nightly")) == 1
    with pytest.raises(ScheduleNotFound):
        await engine.schedules.trigger_now(env_id, "sched_nope")


# -- failures ------------------------------------------------------------------------------

SCHEDULES_LOG = "triggerfish.engine.schedules"


async def _due_schedules(engine: Engine, clock: ManualClock, count: int) -> None:
    """``count`` schedules of one task, every minute, all due now."""
    env_id = await register(engine, manifest("sync"))
    for n in range(count):
        await engine.schedules.create(
            env_id, ScheduleInput("sync", "* * * * *", external_id=f"s{n}")
        )
    clock.advance(30)


async def test_schedules_failing_on_every_sweep_log_a_line_a_minute(
    engine: Engine,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _due_schedules(engine, clock, 2)

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    caplog.set_level(logging.INFO, logger=SCHEDULES_LOG)
    monkeypatch.setattr(engine.schedules.enqueue, "trigger", broken)
    for _ in range(150):  # 75 s of sweeps, two a second
        assert await engine.schedules.fire_due() == 0
        clock.advance(0.5)
    monkeypatch.undo()
    assert await engine.schedules.fire_due() == 2
    records = [r for r in caplog.records if r.name == SCHEDULES_LOG]
    messages = [re.sub(r"sched_\w+", "sched_…", r.getMessage()) for r in records]
    assert messages == [
        "firing schedules failed (RuntimeError: a bug; schedule sched_… and 1 more); trying again",
        "firing schedules still failing: 120 more failure(s) in the last 60 s"
        " (RuntimeError: a bug; schedule sched_… and 1 more)",
        "firing schedules works again after 75 s and 150 failure(s)",
    ]
    assert records[0].exc_info is not None  # a bug: its traceback, once


async def test_an_unreachable_store_stops_the_sweep_of_schedules_without_a_line_each(
    engine: Engine,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _due_schedules(engine, clock, 3)
    tries = 0

    async def unreachable(*_args: Any, **_kwargs: Any) -> Any:
        nonlocal tries
        tries += 1
        raise StoreUnavailable("the database connection failed (ConnectionRefusedError)")

    caplog.set_level(logging.INFO, logger=SCHEDULES_LOG)
    monkeypatch.setattr(engine.schedules.enqueue, "trigger", unreachable)
    for _ in range(4):
        with pytest.raises(StoreUnavailable):  # the maintenance loop logs the outage once
            await engine.schedules.fire_due()
    assert tries == 4  # one schedule per sweep: the others would fail the same way
    assert [r for r in caplog.records if r.name == SCHEDULES_LOG] == []
