"""The store hands out typed records, built positionally from its rows.

A record's fields must be its table's columns in the table's order: the store
builds each one with ``Record(*row)``, so a column added to a table without
its field (or in another place) would shift every value after it. The engine
tests then read the records the store returns on both databases.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Table, select

from tests.engine.test_runs_engine import manifest, setup
from triggerfish._domain import records
from triggerfish._domain.states import JournalStatus, RunStatus
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.journal import JournalEntry
from triggerfish.engine.replay import request_from_run
from triggerfish.engine.schedules import ScheduleInput
from triggerfish.engine.waitpoints import TokenRequest
from triggerfish.store import alerts as alert_store
from triggerfish.store import batches as batch_store
from triggerfish.store import events as event_store
from triggerfish.store import journal as journal_store
from triggerfish.store import logs as log_store
from triggerfish.store import runs as run_store
from triggerfish.store import schedules as schedule_store
from triggerfish.store import tables
from triggerfish.store import users as user_store
from triggerfish.store import waitpoints as wp_store
from triggerfish.store import webhooks as webhook_store
from triggerfish.store import workers as worker_store
from triggerfish.store.runs.insert import NEW_RUN_COLUMNS

RECORD_OF_TABLE: list[tuple[type[Any], Table]] = [
    (records.RunRecord, tables.runs),
    (records.AttemptRecord, tables.attempts),
    (records.JournalRecord, tables.run_journal),
    (records.WaitpointRecord, tables.waitpoints),
    (records.ScheduleRecord, tables.schedules),
    (records.RunEventRecord, tables.run_events),
    (records.LogRecord, tables.run_logs),
    (records.WorkerRecord, tables.workers),
    (records.QueueRecord, tables.queues),
    (records.BatchRecord, tables.batches),
    (records.EventRecord, tables.events),
    (records.KvEntryRecord, tables.kv_entries),
    (records.ProjectRecord, tables.projects),
    (records.EnvironmentRecord, tables.environments),
    (records.ApiKeyRecord, tables.api_keys),
    (records.UserRecord, tables.dashboard_users),
    (records.AlertRuleRecord, tables.alert_rules),
    (records.AlertDeliveryRecord, tables.alert_deliveries),
    (records.WebhookEndpointRecord, tables.webhook_endpoints),
    (records.WebhookDeliveryRecord, tables.webhook_deliveries),
]
#: records of the few columns a query reads, and the table they come from
PARTIAL_RECORDS: list[tuple[type[Any], Table]] = [
    (records.ClaimCandidate, tables.runs),
    (records.DueDelayedRun, tables.runs),
    (records.ExpiredLease, tables.runs),
    (records.GuardedRun, tables.runs),
    (records.LockedRun, tables.runs),
    (records.WaiterRef, tables.waitpoint_waiters),
    (records.DueWaitpoint, tables.waitpoints),
    (records.TaskVersionRecord, tables.task_versions),
]


@pytest.mark.parametrize(
    ("record", "table"), RECORD_OF_TABLE, ids=[t.name for _, t in RECORD_OF_TABLE]
)
def test_a_records_fields_are_its_tables_columns_in_order(record: type[Any], table: Any) -> None:
    fields = [f.name for f in dataclasses.fields(record)]
    assert fields == [c.name for c in table.c]


@pytest.mark.parametrize(
    ("record", "table"), PARTIAL_RECORDS, ids=[r.__name__ for r, _ in PARTIAL_RECORDS]
)
def test_a_partial_records_fields_are_columns_of_its_table(record: type[Any], table: Any) -> None:
    columns = {c.name for c in table.c}
    assert {f.name for f in dataclasses.fields(record)} <= columns


#: the columns of a row being created, and its table
NEW_VALUES: list[tuple[type[Any], Table]] = [
    (records.NewRun, tables.runs),
    (records.NewBatch, tables.batches),
    (records.NewWaitpoint, tables.waitpoints),
    (records.NewLogLine, tables.run_logs),
]


@pytest.mark.parametrize(("new", "table"), NEW_VALUES, ids=[r.__name__ for r, _ in NEW_VALUES])
def test_a_new_values_fields_are_columns_of_its_table(new: type[Any], table: Any) -> None:
    assert {f.name for f in dataclasses.fields(new)} <= {c.name for c in table.c}


#: each store insert the engine makes, and the record or new value it takes
STORE_INSERTS: list[tuple[Callable[..., Any], Any]] = [
    (run_store.insert_run, records.NewRun),
    (batch_store.insert_batch, records.NewBatch),
    (wp_store.insert, records.NewWaitpoint),
    (journal_store.upsert, records.JournalRecord),
    (log_store.append, Sequence[records.NewLogLine]),
    (event_store.insert_event, records.EventRecord),
    (user_store.create_user, records.UserRecord),
    (alert_store.insert_rule, records.AlertRuleRecord),
    (alert_store.raise_alert, records.AlertDeliveryRecord),
    (worker_store.insert_worker, records.WorkerRecord),
    (schedule_store.insert_schedule, records.ScheduleRecord),
    (webhook_store.insert_endpoint, records.WebhookEndpointRecord),
    (webhook_store.insert_delivery, records.WebhookDeliveryRecord),
]


def _store_function(f: Callable[..., Any]) -> str:
    return f"{f.__module__.rpartition('.')[2]}.{f.__name__}"


@pytest.mark.parametrize(
    ("insert", "value"), STORE_INSERTS, ids=[_store_function(f) for f, _ in STORE_INSERTS]
)
def test_a_store_insert_takes_a_typed_value_not_a_dict(
    insert: Callable[..., Any], value: Any
) -> None:
    """The engine hands the store a record or a new value, never a dict of columns."""
    _conn, *taken = inspect.signature(insert, eval_str=True).parameters.values()
    assert [p.annotation for p in taken] == [value]


#: records of a join: columns of several tables
JOINED_RECORDS: list[type[Any]] = [
    records.CallerEnvironment,
    records.ApiKeyListing,
    records.DueAlert,
]


@pytest.mark.parametrize(
    "record",
    [r for r, _ in RECORD_OF_TABLE + PARTIAL_RECORDS + NEW_VALUES] + JOINED_RECORDS,
)
def test_records_are_frozen_and_slotted(record: type[Any]) -> None:
    assert record.__dataclass_params__.frozen
    assert "__slots__" in record.__dict__


def test_a_new_run_sets_only_columns_of_runs() -> None:
    assert set(NEW_RUN_COLUMNS) <= {c.name for c in tables.runs.c}
    assert len(NEW_RUN_COLUMNS) == len(set(NEW_RUN_COLUMNS))


async def test_the_store_returns_run_attempt_and_journal_records(engine: Engine) -> None:
    env_id, worker = await setup(engine, manifest("t"))
    trigger = TriggerRequest("t", {"n": 1}, tags=["b", "a"], metadata={"m": 1}, ttl_text="1h")
    trigger.ttl = 3600.0
    created = await engine.enqueue.trigger(env_id, trigger)
    [claimed] = await engine.dequeue.claim(worker, 1, start=1)
    assert isinstance(claimed, records.RunRecord)
    assert claimed.id == created.id and claimed.status == RunStatus.EXECUTING
    assert claimed.current_attempt_id is not None
    step = JournalEntry(seq=0, kind="step", name="s", status=JournalStatus.OK, result={"x": [1]})
    await engine.journal.record(created.id, claimed.current_attempt_id, step, env_id)

    async with engine.res.db.read() as conn:
        run = await run_store.get(conn, env_id, created.id)
        attempts = await run_store.list_attempts(conn, created.id)
        entry = await journal_store.entry(conn, created.id, 0)
        events = await run_store.list_events(conn, created.id)
    assert isinstance(run, records.RunRecord)
    # as the columns' types read them, on either database
    assert run.payload == {"n": 1} and run.run_metadata == {"m": 1}
    assert run.tags == ["a", "b"] and run.ttl == "1h" and run.is_test is False
    assert isinstance(run.created_at, datetime) and isinstance(run.started_at, datetime)
    # the journal write locked the run to its worker's version, and touched it
    assert dataclasses.replace(claimed, updated_at=run.updated_at, locked_version="v1") == run
    assert [type(a) for a in attempts] == [records.AttemptRecord]
    assert attempts[0].id == claimed.current_attempt_id and attempts[0].number == 1
    assert entry == records.JournalRecord(
        run_id=created.id,
        seq=0,
        kind="step",
        name="s",
        status=JournalStatus.OK,
        result={"x": [1]},
        error=None,
        result_blob=False,
        failures=0,
        started_at=entry.started_at if entry else datetime.min,
        finished_at=entry.finished_at if entry else None,
    )
    assert all(isinstance(e, records.RunEventRecord) for e in events)
    assert [e.to_status for e in events] == ["QUEUED", "DEQUEUED", "EXECUTING"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "FAILED"  # type: ignore[misc]


async def test_the_store_returns_waitpoint_and_schedule_records(engine: Engine) -> None:
    env_id, _ = await setup(
        engine, {**manifest("t"), "schedule": {"cron": None, "timezone": "UTC"}}
    )
    token, _ = await engine.waitpoints.create_token(env_id, TokenRequest(tags=["t1"]))
    info = await engine.schedules.create(env_id, ScheduleInput(task_id="t", cron="0 * * * *"))
    async with engine.res.db.read() as conn:
        stored_token = await wp_store.get(conn, token.id)
        schedule = await schedule_store.get_schedule(conn, env_id, info.id)
    assert isinstance(stored_token, records.WaitpointRecord)
    assert stored_token.kind == "TOKEN" and stored_token.tags == ["t1"]
    assert stored_token.output_is_error is False
    assert isinstance(schedule, records.ScheduleRecord)
    assert schedule.active is True and schedule.cron == "0 * * * *"


async def test_a_new_waitpoints_unset_json_columns_are_sql_null(engine: Engine) -> None:
    """Not JSON null: "no schema" (and no output, no event filter) is a NULL the
    store tests with ``IS NULL``."""
    env_id, _ = await setup(engine, manifest("t"))
    token, _ = await engine.waitpoints.create_token(env_id, TokenRequest())
    with_schema, _ = await engine.waitpoints.create_token(
        env_id, TokenRequest(schema={"type": "object"})
    )
    unset = (
        tables.waitpoints.c.output.is_(None),
        tables.waitpoints.c.event_filter.is_(None),
        tables.waitpoints.c.schema.is_(None),
    )
    async with engine.res.db.read() as conn:
        rows = {
            wp_id: tuple(
                (await conn.execute(select(*unset).where(tables.waitpoints.c.id == wp_id))).one()
            )
            for wp_id in (token.id, with_schema.id)
        }
    assert rows == {token.id: (True, True, True), with_schema.id: (True, True, False)}


async def test_a_plain_steps_journal_entry_leaves_display_and_tries_sql_null(
    engine: Engine,
) -> None:
    env_id, worker = await setup(engine, manifest("t"))
    created = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    [claimed] = await engine.dequeue.claim(worker, 1, start=1)
    assert claimed.current_attempt_id is not None
    plain = JournalEntry(seq=0, kind="step", name="a", status=JournalStatus.OK, result=1)
    shown = dataclasses.replace(
        plain, seq=1, display={"icon": "mail"}, tries=[{"number": 1}], failures=1
    )
    for entry in (plain, shown):
        await engine.journal.record(created.id, claimed.current_attempt_id, entry, env_id)
    journal = tables.run_journal.c
    unset = select(journal.seq, journal.display.is_(None), journal.tries.is_(None))
    async with engine.res.db.read() as conn:
        rows = (await conn.execute(unset.where(journal.run_id == created.id))).all()
        stored = await journal_store.entry(conn, created.id, 1)
    assert sorted(tuple(r) for r in rows) == [(0, True, True), (1, False, False)]
    assert stored is not None and stored.display == {"icon": "mail"}
    assert stored.tries == [{"number": 1}] and stored.failures == 1 and stored.result == 1


async def test_partial_reads_return_typed_records(engine: Engine) -> None:
    """What the claim, the maintenance sweeps, the journal guard and the worker
    pages read, each a record rather than a database row."""
    env_id, worker = await setup(engine, manifest("t"))
    now = engine.res.clock.now()
    later = now + 10 * 24 * 3600
    queued = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}, ttl=60.0))
    delayed = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}, delay_until=now + 60))
    token, _ = await engine.waitpoints.create_token(env_id, TokenRequest(timeout_at=now + 60))
    async with engine.res.db.read() as conn:
        candidates = await run_store.queued_candidates(
            conn,
            env_id=env_id,
            task_ids=["t"],
            version="v1",
            now=now,
            limit=10,
            skip_locked=False,
        )
        due = await run_store.due_delayed(conn, later, 10)
        expired = await run_store.past_ttl(conn, later, 10)
        waits = await wp_store.due(conn, later, 10)
        workers = await worker_store.online_workers(conn, env_id, now - 60)
        one = await worker_store.get_worker(conn, worker.id)
        versions = await worker_store.task_versions_of(conn, env_id)
    assert candidates == [
        records.ClaimCandidate(queued.id, "task/t", None, candidates[0].order_key)
    ]
    assert due == [records.DueDelayedRun(delayed.id, env_id, "task/t", None, 0.0)]
    assert expired == [queued.id]
    assert waits == [records.DueWaitpoint(token.id, "TOKEN", now + 60)]
    assert [type(w) for w in workers] == [records.WorkerRecord] and workers[0] == one
    assert one is not None and (one.id, one.version, one.tasks) == (worker.id, "v1", ["t"])
    assert [(v.task_identifier, v.version) for v in versions] == [("t", "v1")]
    assert isinstance(versions[0], records.TaskVersionRecord)

    [claimed] = await engine.dequeue.claim(worker, 1, start=1)
    attempt_id = claimed.current_attempt_id
    assert attempt_id is not None
    async with engine.res.db.read() as conn:
        leases = await run_store.expired_leases(conn, later, 10)
    assert leases == [records.ExpiredLease(claimed.id, attempt_id, RunStatus.EXECUTING)]
    async with engine.res.db.write() as conn:
        guarded = await journal_store.guard_executing(
            conn, claimed.id, attempt_id, claimed.created_at, lock_version=False
        )
        locked = await wp_store.lock_run(conn, claimed.id)
    assert guarded == records.GuardedRun(claimed.id, env_id, "t")
    assert locked == records.LockedRun(claimed.id, RunStatus.EXECUTING, env_id)


def test_a_replay_is_triggered_from_the_runs_record() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5)
    columns: dict[str, Any] = {f.name: None for f in dataclasses.fields(records.RunRecord)}
    run = records.RunRecord(
        **columns
        | {
            "id": "run_1",
            "task_identifier": "t",
            "payload": {"n": 1},
            "run_metadata": {"m": 2},
            "machine": "small-2x",
            "max_attempts": 3,
            "max_duration": 60.0,
            "queue_name": "q",
            "concurrency_key": "k",
            "ttl": "10m",
            "priority": 5.0,
            "is_test": True,
            "created_at": at,
        }
    )
    req = request_from_run(run, ["a"])
    assert (req.task_id, req.payload, req.tags, req.metadata) == ("t", {"n": 1}, ["a"], {"m": 2})
    assert (req.machine, req.max_attempts, req.max_duration) == ("small-2x", 3, 60.0)
    assert (req.queue, req.concurrency_key, req.priority) == ("q", "k", 5.0)
    assert (req.ttl, req.ttl_text, req.is_test) == (600.0, "10m", True)
    assert (req.replay_of, req.trigger_function) == ("run_1", "replay")


def test_a_positional_builder_makes_the_record_init_makes() -> None:
    values: tuple[Any, ...] = tuple(range(len(dataclasses.fields(records.RunRecord))))
    build = records.positional(records.RunRecord)
    assert build(values) == records.RunRecord(*values)
    with pytest.raises(ValueError):
        build(values[:-1])  # a column short: never a silently shifted record
    with pytest.raises(dataclasses.FrozenInstanceError):
        build(values).id = "other"  # type: ignore[misc]
