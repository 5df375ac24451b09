"""Creating runs: validation, idempotency, queue choice, the insert, the wake-up."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from sqlalchemy.exc import IntegrityError

from triggerfish._ids import new_id
from triggerfish.engine.resources import EngineResources, to_datetime
from triggerfish.engine.states import RunStatus
from triggerfish.errors import PayloadTooLarge, PayloadValidationError, TaskNotFound
from triggerfish.sdk._machines import DEFAULT_MACHINE
from triggerfish.store import runs as run_store
from triggerfish.store import workers as worker_store

MAX_TAGS = 10
DEFAULT_IDEMPOTENCY_TTL = 30 * 86400.0


@dataclass
class TriggerRequest:
    """Everything a trigger may ask for, already parsed into engine terms."""

    task_id: str
    payload: Any = None
    payload_type: str = "application/json"
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    idempotency_key_raw: str | None = None
    idempotency_key_ttl: float | None = None
    machine: str | None = None
    max_attempts: int | None = None
    max_duration: float | None = None
    queue: str | None = None
    concurrency_key: str | None = None
    delay_until: float | None = None  # epoch seconds
    ttl: float | None = None  # seconds
    ttl_text: str | None = None
    priority: float = 0.0
    trigger_function: str = "trigger"
    is_test: bool = False


@dataclass(frozen=True)
class TriggerResult:
    id: str
    is_cached: bool


class Enqueue:
    def __init__(self, res: EngineResources) -> None:
        self.res = res

    async def trigger(self, env_id: str, req: TriggerRequest) -> TriggerResult:
        """Create a run (or find the one its idempotency key names)."""
        self._check_size(req.payload)
        now = self.res.clock.now()
        try:
            async with self.res.db.write() as conn:
                manifest = await worker_store.latest_manifest(conn, env_id, req.task_id)
                if manifest is None:
                    known = await worker_store.known_task_ids(conn, env_id)
                    raise TaskNotFound(req.task_id, known)
                _validate(manifest.get("payload_schema"), req.payload)
                if req.idempotency_key:
                    cached = await self._cached_run(conn, env_id, req, now)
                    if cached is not None:
                        return TriggerResult(cached, True)
                values = self._row(env_id, req, manifest, now)
                await worker_store.ensure_queues(
                    conn,
                    env_id,
                    [{"name": values["queue_name"]}],
                    to_datetime(now),
                    update_limits=False,
                )
                await run_store.insert_run(conn, values, values["tags"])
        except IntegrityError:
            if not req.idempotency_key:
                raise
            # a concurrent trigger with the same idempotency key won the insert
            return await self._after_race(env_id, req)
        if values["status"] == RunStatus.QUEUED:
            await self.res.notifier.notify(env_id)
        return TriggerResult(values["id"], False)

    async def _after_race(self, env_id: str, req: TriggerRequest) -> TriggerResult:
        async with self.res.db.read() as conn:
            row = await run_store.find_idempotent(
                conn, env_id, req.task_id, req.idempotency_key or ""
            )
        if row is None:  # the winner's key expired in between: vanishingly rare
            raise RuntimeError("idempotency race could not be resolved; retry the trigger")
        return TriggerResult(row.id, True)

    async def _cached_run(
        self, conn: Any, env_id: str, req: TriggerRequest, now: float
    ) -> str | None:
        assert req.idempotency_key is not None
        row = await run_store.find_idempotent(conn, env_id, req.task_id, req.idempotency_key)
        if row is None:
            return None
        if row.idempotency_key_expires_at is None or row.idempotency_key_expires_at > now:
            return str(row.id)
        await run_store.clear_idempotency_key(conn, row.id)
        return None

    def _check_size(self, payload: Any) -> None:
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        if size > self.res.settings.max_payload_bytes:
            raise PayloadTooLarge(size, self.res.settings.max_payload_bytes)

    def _row(
        self, env_id: str, req: TriggerRequest, manifest: dict[str, Any], now: float
    ) -> dict[str, Any]:
        created = to_datetime(now)
        delayed = req.delay_until is not None and req.delay_until > now
        start_at = req.delay_until if delayed and req.delay_until else now
        ttl_key = req.idempotency_key_ttl or DEFAULT_IDEMPOTENCY_TTL
        return {
            "id": new_id("run", now),
            "environment_id": env_id,
            "task_identifier": req.task_id,
            "queue_name": req.queue or manifest["queue"]["name"],
            "concurrency_key": req.concurrency_key,
            "status": (RunStatus.DELAYED if delayed else RunStatus.QUEUED).value,
            "payload": req.payload,
            "payload_type": req.payload_type,
            "tags": sorted(set(req.tags)),
            "run_metadata": req.metadata,
            "idempotency_key": req.idempotency_key,
            "idempotency_key_raw": req.idempotency_key_raw,
            "idempotency_key_expires_at": (now + ttl_key) if req.idempotency_key else None,
            "machine": req.machine or manifest.get("machine") or DEFAULT_MACHINE,
            "max_attempts": req.max_attempts,
            "max_duration": req.max_duration,
            "priority": req.priority,
            "ttl": req.ttl_text,
            "expires_at": (start_at + req.ttl) if req.ttl else None,
            "available_at": start_at,
            # priority is a head start: a run with priority 10 sorts as if
            # queued 10 s earlier
            "order_key": start_at - req.priority,
            "trigger_function": req.trigger_function,
            "is_test": req.is_test,
            "created_at": created,
            "updated_at": created,
            "delayed_until": to_datetime(start_at) if delayed else None,
        }


def _validate(schema: dict[str, Any] | None, payload: Any) -> None:
    if not schema:
        return
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
    if error is None:
        return
    path = ["payload", *(str(p) for p in error.absolute_path)]
    message = error.message
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [f for f in error.validator_value if f not in error.instance]
        if missing:
            path.append(str(missing[0]))
            message = "field required"
    raise PayloadValidationError(".".join(path), message)


#: checks a payload against a task's JSON schema (also used for events)
validate_payload = _validate
