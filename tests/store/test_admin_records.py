"""Reads of queues, batches, events, environments, users and alerts hand out records.

Each read the engine makes of these tables is called here on both databases,
and what it returns must be the record of ``_domain/records.py``, never a
database row: the layers above the store never see SQLAlchemy.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tests.engine.test_runs_engine import manifest, setup
from triggerfish._domain import records
from triggerfish._domain.times import to_datetime
from triggerfish.engine import Engine
from triggerfish.engine.alerts import RuleSpec
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.store import alerts as alert_store
from triggerfish.store import batches as batch_store
from triggerfish.store import envs as env_store
from triggerfish.store import events as event_store
from triggerfish.store import queues as queue_store
from triggerfish.store import users as user_store


class Stored:
    """What the test put in the store, to read back."""

    def __init__(self, env_id: str, batch_id: str, rule_id: str, key: str, attempt_id: str):
        self.env_id = env_id
        self.batch_id = batch_id
        self.rule_id = rule_id
        self.key = key
        self.attempt_id = attempt_id


async def _store_one_of_each(engine: Engine) -> Stored:
    env_id, worker = await setup(engine, manifest("t"))
    batch = await engine.enqueue.create_batch(env_id, 1, idempotency_key="ik", request_key="rk")
    await engine.events.send(env_id, "user.created", {"n": 1}, "ev_1")
    await engine.events.kv_set(env_id, "k", {"v": 1})
    await engine.users.create("ada", "a long password")
    key, _ = await engine.environments.create_key("dev", "test")
    spec = RuleSpec("r", "RUN_FAILED", "WEBHOOK", "https://example.invalid/hook", {})
    rule, _ = await engine.alerts.add_rule(env_id, spec)
    await _raise_alert(engine, env_id, rule["id"])
    await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    [claimed] = await engine.dequeue.claim(worker, 1)
    return Stored(env_id, batch.id, rule["id"], key, claimed.claimed_attempt_id)


async def _raise_alert(engine: Engine, env_id: str, rule_id: str) -> None:
    now = engine.res.clock.now()
    delivery = records.AlertDeliveryRecord(
        id="alertdelivery_1",
        environment_id=env_id,
        rule_id=rule_id,
        dedup_key=f"{rule_id}:0",
        status="PENDING",
        payload={"kind": "RUN_FAILED"},
        count=1,
        attempts=0,
        next_attempt_at=now,
        last_error=None,
        created_at=to_datetime(now),
        sent_at=None,
    )
    async with engine.res.db.write() as conn:
        await alert_store.raise_alert(conn, delivery)


async def _reads(conn: AsyncConnection, s: Stored, now: float) -> dict[str, tuple[Any, type]]:
    """Each read's name -> (what it returned, the record it must be)."""
    queue = await queue_store.find_queue(conn, s.env_id, name="task/t")
    assert queue is not None
    user = await user_store.user_by_name(conn, "ada")
    assert user is not None
    return {
        "find_queue": (queue, records.QueueRecord),
        "list_queues": (
            (await queue_store.list_queues(conn, s.env_id, offset=0, limit=9))[0],
            records.QueueRecord,
        ),
        "update_queue": (
            await queue_store.update_queue(conn, queue.id, paused=True),
            records.QueueRecord,
        ),
        "batch get": (await batch_store.get(conn, s.env_id, s.batch_id), records.BatchRecord),
        "get_for_update": (
            await batch_store.get_for_update(conn, s.env_id, s.batch_id),
            records.BatchRecord,
        ),
        "find_idempotent": (
            await batch_store.find_idempotent(conn, s.env_id, "ik"),
            records.BatchRecord,
        ),
        "by_request_key": (
            await batch_store.by_request_key(conn, s.env_id, "rk"),
            records.BatchRecord,
        ),
        "get_event": (
            await event_store.get_event(conn, s.env_id, "user.created", "ev_1"),
            records.EventRecord,
        ),
        "list_events": (
            await event_store.list_events(conn, s.env_id, None, 9),
            records.EventRecord,
        ),
        "kv_get": (await event_store.kv_get(conn, s.env_id, "k", now), records.KvEntryRecord),
        "ensure_project": (
            await env_store.ensure_project(conn, "p", to_datetime(now)),
            records.ProjectRecord,
        ),
        "list_environments": (
            [listed[0] for listed in await env_store.list_environments(conn)],
            records.EnvironmentRecord,
        ),
        "environment_by_slug": (
            await env_store.environment_by_slug(conn, "dev"),
            records.CallerEnvironment,
        ),
        "environment_by_id": (
            await env_store.environment_by_id(conn, s.env_id),
            records.CallerEnvironment,
        ),
        "environment_for_key": (
            await env_store.environment_for_key(conn, s.key),
            records.CallerEnvironment,
        ),
        "environment_for_attempt": (
            await env_store.environment_for_attempt(conn, s.attempt_id, ("DEQUEUED",)),
            records.CallerEnvironment,
        ),
        "list_keys": (await env_store.list_keys(conn), records.ApiKeyListing),
        "create_key": (
            (await env_store.create_key(conn, s.env_id, "dev", "n", to_datetime(now)))[1],
            records.ApiKeyRecord,
        ),
        "user_by_name": (user, records.UserRecord),
        "user_by_id": (await user_store.user_by_id(conn, user.id), records.UserRecord),
        "list_users": (await user_store.list_users(conn), records.UserRecord),
        "rules": (await alert_store.rules(conn, s.env_id), records.AlertRuleRecord),
        "rule": (await alert_store.rule(conn, s.env_id, s.rule_id), records.AlertRuleRecord),
        "due_deliveries": (await alert_store.due_deliveries(conn, now, 9), records.DueAlert),
        "deliveries": (
            await alert_store.deliveries(conn, s.env_id, 9),
            records.AlertDeliveryRecord,
        ),
    }


async def test_reads_of_queues_batches_events_environments_users_and_alerts_are_records(
    engine: Engine,
) -> None:
    stored = await _store_one_of_each(engine)
    async with engine.res.db.write() as conn:  # a few of the reads lock or write
        reads = await _reads(conn, stored, engine.res.clock.now())
    wrong = {}
    for name, (found, record) in reads.items():
        values = found if isinstance(found, list) else [found]
        if not values or not all(isinstance(v, record) for v in values):
            wrong[name] = [type(v).__name__ for v in values]
    assert wrong == {}


async def test_a_due_alert_pairs_the_delivery_with_its_rule(engine: Engine) -> None:
    stored = await _store_one_of_each(engine)
    async with engine.res.db.read() as conn:
        [due] = await alert_store.due_deliveries(conn, engine.res.clock.now(), 9)
    assert (due.delivery.id, due.delivery.rule_id) == ("alertdelivery_1", stored.rule_id)
    assert due.delivery.payload == {"kind": "RUN_FAILED"} and due.delivery.count == 1
    assert (due.rule.id, due.rule.channel) == (stored.rule_id, "WEBHOOK")
    assert due.rule.target == "https://example.invalid/hook" and due.rule.secret_sealed
