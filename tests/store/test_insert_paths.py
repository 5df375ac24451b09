"""The driver-level insert of a new queued run stores what the general insert stores.

``insert_queued_run`` (in the trigger's transaction, both stores) and
``insert_queued_run_alone`` (a statement of its own, PostgreSQL) each replace
the general path: a fair tag taken by ``queues.take_tags``, then ``insert_run``
with the run, its tags and its "triggered" history row. Two environments of
one database get the same triggers at the same clock times: in one the engine
takes its usual driver-level insert, in the other the test routes the same
values through the general path. Their runs, tags, history, attempts and fair
buckets must agree, once ids are read as positions, for every outcome of a
trigger: plain, with tags, with a concurrency key and priority, with an
idempotency key (new, then cached), delayed, and after claims have moved the
service clock. A duplicate idempotency key is refused by each path alike, with
the store's ``DuplicateKey``, and leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.engine.test_runs_engine import manifest
from tests.support import started_engine
from tests.support.positions import named_events, named_run
from triggerfish._domain.records import NewRun
from triggerfish.engine import Engine, manifests
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.engine.enqueue import FAIR_QUANTUM, TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.store import queues as queue_store
from triggerfish.store import runs as run_store
from triggerfish.store.db import Database
from triggerfish.store.errors import DuplicateKey
from triggerfish.store.tables import fair_buckets, run_tags

IGNORED = {"id", "environment_id", "current_attempt_id", "worker_id"}


async def general_insert(
    conn: AsyncConnection, values: NewRun, *, now: float, quantum: float
) -> float:
    """The general path a driver-level insert replaces: a fair tag, then ``insert_run``."""
    tag = await queue_store.take_tags(
        conn, values.environment_id, values.queue_name, values.concurrency_key, now, 1, quantum
    )
    order_key = tag - float(values.priority)
    await run_store.insert_run(conn, dataclasses.replace(values, order_key=order_key))
    return order_key


async def general_insert_alone(
    db: Database, values: NewRun, *, now: float, quantum: float
) -> float:
    async with db.write() as conn:
        return await general_insert(conn, values, now=now, quantum=quantum)


class Routes:
    """Sends the general environment's inserts down the general path, and records
    which insert the other environment's trigger took."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, general_env: str) -> None:
        self.general_env = general_env
        self.taken: list[str] = []
        self._route(monkeypatch, "insert_queued_run", general_insert)
        self._route(monkeypatch, "insert_queued_run_alone", general_insert_alone)
        self._route(monkeypatch, "insert_run", None)

    def _route(
        self,
        monkeypatch: pytest.MonkeyPatch,
        name: str,
        general: Callable[..., Awaitable[float]] | None,
    ) -> None:
        driver = getattr(run_store, name)

        async def routed(conn_or_db: Any, values: NewRun, *args: Any, **kw: Any) -> Any:
            if values.environment_id != self.general_env:
                self.taken.append(name)
            elif general is not None:
                return await general(conn_or_db, values, *args, **kw)
            return await driver(conn_or_db, values, *args, **kw)

        monkeypatch.setattr(run_store, name, routed)


class World:
    """One environment, its worker, and the runs triggered in it, in order."""

    def __init__(self, engine: Engine, env_id: str, worker: WorkerIdentity) -> None:
        self.engine, self.env_id, self.worker = engine, env_id, worker
        self.run_ids: list[str] = []

    async def trigger(self, req: TriggerRequest) -> bool:
        """Trigger ``req``; whether it named a run that already existed."""
        result = await self.engine.enqueue.trigger(self.env_id, req)
        if result.id not in self.run_ids:
            self.run_ids.append(result.id)
        return result.is_cached

    async def snapshot(self) -> dict[str, Any]:
        """Every run with its tags, history and attempts, and the fair buckets, with
        ids read as positions."""
        names = {self.worker.id: "worker"}
        out: dict[str, Any] = {"runs": []}
        async with self.engine.res.db.read() as conn:
            for n, run_id in enumerate(self.run_ids):
                names[run_id] = f"run{n}"
                row = await run_store.get_by_id(conn, run_id)
                assert row is not None
                attempts = await run_store.list_attempts(conn, run_id)
                names.update({a.id: f"run{n}/attempt{a.number}" for a in attempts})
                run = named_run(row, names, IGNORED)
                tags = await conn.execute(
                    select(run_tags.c.tag, run_tags.c.environment_id)
                    .where(run_tags.c.run_id == run_id)
                    .order_by(run_tags.c.tag)
                )
                events = await named_events(conn, run_id, names)
                out["runs"].append(
                    (
                        run,
                        [(tag, env == self.env_id) for tag, env in tags],
                        [(a.number, a.status, a.created_at, a.started_at) for a in attempts],
                        events,
                    )
                )
            buckets = await conn.execute(
                select(
                    fair_buckets.c.queue_name,
                    fair_buckets.c.concurrency_key,
                    fair_buckets.c.next_tag,
                )
                .where(fair_buckets.c.environment_id == self.env_id)
                .order_by(fair_buckets.c.queue_name, fair_buckets.c.concurrency_key)
            )
            out["buckets"] = [tuple(b) for b in buckets]
        return out


async def _worlds(engine: Engine) -> tuple[World, World]:
    worlds = []
    for slug in ("dev", "prod"):
        env = await engine.environments.by_slug(slug)
        worker = await engine.workers.register(
            env.id, version="v1", name="w", concurrency=8, tasks=[manifest()]
        )
        worlds.append(World(engine, env.id, worker))
    return worlds[0], worlds[1]


#: what the trigger path does with each outcome: the request, and the insert it takes
#: on PostgreSQL (SQLite takes ``insert_queued_run`` for every queued run)
OUTCOMES: list[tuple[str, TriggerRequest, str]] = [
    # the first trigger learns the task's manifest and queue: the full transaction
    ("first", TriggerRequest("t", {"n": 0}), "insert_queued_run"),
    ("plain", TriggerRequest("t", {"n": 1}), "insert_queued_run_alone"),
    ("tags", TriggerRequest("t", {"n": 2}, tags=["b", "a", "b"]), "insert_queued_run_alone"),
    (
        "concurrency key and priority",
        TriggerRequest("t", {"n": 3}, concurrency_key="k1", priority=5.0),
        "insert_queued_run_alone",
    ),
    (
        "idempotency key",
        TriggerRequest("t", {"n": 4}, idempotency_key="idem", idempotency_key_raw="raw"),
        "insert_queued_run",
    ),
    ("delayed", TriggerRequest("t", {"n": 5}, delay_until=4e9), "insert_run"),
    (
        "same key again",
        TriggerRequest("t", {"n": 6}, concurrency_key="k1"),
        "insert_queued_run_alone",
    ),
    (
        "everything",
        TriggerRequest(
            "t",
            {"n": 7},
            tags=["x"],
            metadata={"m": 1},
            concurrency_key="k2",
            priority=2.5,
            ttl=60.0,
            ttl_text="1m",
            max_attempts=4,
            machine="large-1x",
        ),
        "insert_queued_run_alone",
    ),
]


async def test_each_trigger_stores_by_the_driver_insert_what_the_general_insert_stores(
    db_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a slow run must not see the manifest cache expire: it decides the path
    monkeypatch.setattr(manifests, "LATEST_TTL", 3600.0)
    async with started_engine(db_url, clock) as engine:
        fast, general = await _worlds(engine)
        routes = Routes(monkeypatch, general.env_id)
        postgres = engine.res.db.capabilities.one_statement_trigger
        for round_ in range(2):  # the second round meets active runs: another service clock
            for name, req, on_postgres in OUTCOMES:
                clock.advance(1)
                routes.taken.clear()
                cached = [await world.trigger(req) for world in (fast, general)]
                if round_ == 1 and name == "idempotency key":
                    assert cached == [True, True]  # the key names the first round's run
                    assert routes.taken == []
                    continue
                assert cached == [False, False]
                assert routes.taken == [_taken(name, on_postgres, round_, postgres)], name
                assert await fast.snapshot() == await general.snapshot(), name
            clock.advance(1)
            for world in (fast, general):
                await engine.dequeue.claim(world.worker, 3, 1)  # the same path for both
            assert await fast.snapshot() == await general.snapshot()


def _taken(name: str, on_postgres: str, round_: int, postgres: bool) -> str:
    """The insert the trigger path takes for an outcome."""
    if on_postgres == "insert_run":  # not queued: no fair tag to take
        return on_postgres
    if not postgres:
        return "insert_queued_run"
    if name == "first" and round_ == 1:  # the task's manifest and queue are known now
        return "insert_queued_run_alone"
    return on_postgres


INSERTS: dict[str, Callable[[Database, NewRun], Awaitable[float]]] = {
    "general": lambda db, values: general_insert_alone(db, values, now=1.0, quantum=FAIR_QUANTUM),
    "in a transaction": lambda db, values: _in_transaction(db, values),
    "alone": lambda db, values: run_store.insert_queued_run_alone(
        db, values, now=1.0, quantum=FAIR_QUANTUM
    ),
}


async def _in_transaction(db: Database, values: NewRun) -> float:
    async with db.write() as conn:
        return await run_store.insert_queued_run(conn, values, now=1.0, quantum=FAIR_QUANTUM)


async def _refused_alike(db_url: str, clock: ManualClock, path: str) -> None:
    async with started_engine(db_url, clock) as engine:
        world, _ = await _worlds(engine)
        first = TriggerRequest("t", {"n": 1}, idempotency_key="idem", tags=["a"])
        await world.trigger(first)
        before = await world.snapshot()
        clock.advance(1)
        again = engine.enqueue._new_run(world.env_id, first, manifest(), clock.now())
        with pytest.raises(DuplicateKey):
            await INSERTS[path](engine.res.db, again)
        assert await world.snapshot() == before  # no run, tag, history row or fair tag


@pytest.mark.parametrize("path", ["general", "in a transaction"])
async def test_a_duplicate_idempotency_key_is_refused_alike_and_leaves_nothing(
    db_url: str, clock: ManualClock, path: str
) -> None:
    await _refused_alike(db_url, clock, path)


async def test_the_insert_alone_refuses_a_duplicate_idempotency_key_and_leaves_nothing(
    pg_db_url: str, clock: ManualClock
) -> None:
    await _refused_alike(pg_db_url, clock, "alone")
