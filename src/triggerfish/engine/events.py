"""Events: ``send`` starts every task subscribed to the name and wakes matching waits.

An event id makes sending idempotent per (environment, name, id): the first
send records the event with the runs it started (and any subscriber that
rejected the payload); a repeat returns that record and starts nothing, and a
repeat of a rejected send is refused again with the first rejection. The id
also addresses ``wait.for_event(name, id=...)`` waits. Runs are triggered with idempotency
keys derived from the event id, so a send interrupted half-way and retried
still starts each subscriber once.

Also here: the environment's small durable key-value store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from triggerfish._domain.records import EventRecord
from triggerfish._domain.times import to_datetime
from triggerfish._ids import new_id
from triggerfish.engine.enqueue import Enqueue, TriggerRequest, validate_payload
from triggerfish.engine.resources import EngineResources
from triggerfish.engine.waitpoints import Waitpoints
from triggerfish.errors import PayloadTooLarge, PayloadValidationError, UserError
from triggerfish.store import events as event_store
from triggerfish.store import workers as worker_store

MAX_KEY_LENGTH = 512


@dataclass
class SentEvent:
    id: str
    name: str
    run_ids: list[str] = field(default_factory=list)
    #: subscribers that rejected the payload: ``{"task", "field", "message"}``
    errors: list[dict[str, str]] = field(default_factory=list)
    waits_resolved: int = 0
    is_cached: bool = False


class Events:
    def __init__(self, res: EngineResources, enqueue: Enqueue, waitpoints: Waitpoints) -> None:
        self.res = res
        self.enqueue = enqueue
        self.waitpoints = waitpoints

    async def send(
        self, env_id: str, name: str, payload: Any, event_id: str | None = None
    ) -> SentEvent:
        """Start the subscribers of ``name`` and resolve matching ``wait.for_event`` waits.

        Raises ``PayloadValidationError`` (the event is still recorded, with
        the errors) when a subscriber's payload model rejects the payload, and
        (nothing recorded, the wait stays open) when a validated wait the event
        is addressed to by ``event_id`` refuses it. A validated wait for any id
        stays open when the payload does not satisfy it.
        """
        if not name or len(name) > 256:
            raise UserError("name: an event name of 1 to 256 characters is required")
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        if size > self.res.settings.max_payload_bytes:
            raise PayloadTooLarge(size, self.res.settings.max_payload_bytes)
        now = self.res.clock.now()
        addressed = event_id is not None
        event_id = event_id or new_id("event", now)
        async with self.res.db.read() as conn:
            seen = await event_store.get_event(conn, env_id, name, event_id)
            subscribers = await self._subscribers(conn, env_id, name)
        if seen is not None:
            cached = SentEvent(
                seen.id, seen.name, list(seen.run_ids), list(seen.errors), is_cached=True
            )
            if cached.errors:
                raise _rejection(cached)
            return cached
        if addressed:  # a validated wait refuses what is addressed to it: nothing is stored
            refused = await self.waitpoints.refusal_of(env_id, name, event_id, payload)
            if refused is not None:
                raise refused
        sent = SentEvent(event_id, name)
        for task_id, manifest in subscribers:
            try:
                validate_payload(manifest.get("payload_schema"), payload)
            except PayloadValidationError as exc:
                sent.errors.append({"task": task_id, "field": exc.field, "message": str(exc)})
        if not sent.errors:
            for task_id, _ in subscribers:
                req = TriggerRequest(
                    task_id,
                    payload,
                    idempotency_key=f"event:{event_id}:{task_id}"[:128],
                    trigger_function="event",
                )
                sent.run_ids.append((await self.enqueue.trigger(env_id, req)).id)
        woken: set[str] = set()
        async with self.res.db.write() as conn:
            fresh = await event_store.insert_event(
                conn,
                EventRecord(
                    environment_id=env_id,
                    id=event_id,
                    name=name,
                    payload=payload,
                    run_ids=sent.run_ids,
                    errors=sent.errors,
                    created_at=to_datetime(now),
                ),
            )
            if fresh and not sent.errors:
                sent.waits_resolved = await self.waitpoints.deliver_event_in(
                    conn, env_id, name, payload, event_id, woken
                )
        await self.waitpoints.wake(woken)
        if not fresh:
            sent.is_cached = True
        if sent.errors:
            raise _rejection(sent)
        return sent

    async def _subscribers(
        self, conn: Any, env_id: str, name: str
    ) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for task_id in sorted(await worker_store.known_task_ids(conn, env_id)):
            manifest = await worker_store.latest_manifest(conn, env_id, task_id)
            if manifest is not None and manifest.get("on_event") == name:
                found.append((task_id, manifest))
        return found

    async def recent(self, env_id: str, name: str | None, limit: int = 50) -> list[EventRecord]:
        """The latest events sent (of ``name``, or all), newest first."""
        async with self.res.db.read() as conn:
            return await event_store.list_events(conn, env_id, name, limit)

    # -- key-value store -------------------------------------------------------------

    async def kv_get(self, env_id: str, key: str) -> tuple[bool, Any]:
        """``(found, value)``; expired entries are not found."""
        _check_key(key)
        async with self.res.db.read() as conn:
            entry = await event_store.kv_get(conn, env_id, key, self.res.clock.now())
        return (entry is not None, entry.value if entry is not None else None)

    async def kv_set(self, env_id: str, key: str, value: Any, ttl: float | None = None) -> None:
        _check_key(key)
        if ttl is not None and ttl <= 0:
            raise UserError("ttl: must be a positive number of seconds")
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            await event_store.kv_set(
                conn, env_id, key, value, now + ttl if ttl else None, to_datetime(now)
            )

    async def kv_delete(self, env_id: str, key: str) -> bool:
        _check_key(key)
        async with self.res.db.write() as conn:
            return await event_store.kv_delete(conn, env_id, key)


def _rejection(sent: SentEvent) -> PayloadValidationError:
    """The refusal of an event a subscriber rejected (the same on every resend)."""
    first = sent.errors[0]
    return PayloadValidationError(
        first["field"],
        f"event {sent.name!r} rejected by task {first['task']!r}: {first['message']} "
        f"(event {sent.id} recorded with the error; no run started)",
    )


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_KEY_LENGTH:
        raise UserError(f"key: must be 1 to {MAX_KEY_LENGTH} characters")
