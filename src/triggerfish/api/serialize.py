"""Rows to the JSON shapes of Trigger.dev's API (WIRE.md §3).

Absent optional fields are omitted, never ``null``: the official SDK's schemas
reject ``null`` for most of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from triggerfish._domain.records import AttemptRecord, JournalRecord, LogRecord, RunRecord
from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import iso_millis, to_datetime
from triggerfish.engine.queues import WaitReason
from triggerfish.engine.runs import RunDetail
from triggerfish.engine.workers import RegisteredTask

_QUEUED = {RunStatus.QUEUED, RunStatus.DELAYED, RunStatus.PENDING_VERSION}
_EXECUTING = {RunStatus.EXECUTING, RunStatus.DEQUEUED}
# Trigger.dev leaves EXPIRED and TIMED_OUT out of "completed", which makes
# runs.poll hang on them; they are final, so they count here.
_COMPLETED = {
    RunStatus.COMPLETED,
    RunStatus.CANCELED,
    RunStatus.FAILED,
    RunStatus.CRASHED,
    RunStatus.SYSTEM_FAILURE,
    RunStatus.EXPIRED,
    RunStatus.TIMED_OUT,
}


#: the SDK's four ``triggerFunction`` values; any other source (replay, event,
#: webhook, schedule…) goes on the wire as ``trigger``, with ``triggerSource``
#: (ours) naming it
SDK_TRIGGER_FUNCTIONS = frozenset(
    {"trigger", "triggerAndWait", "batchTrigger", "batchTriggerAndWait"}
)

#: run statuses the 3.x SDK does not know, as its schema names them
_V3_RUN_STATUS = {
    RunStatus.PENDING_VERSION.value: "WAITING_FOR_DEPLOY",
    RunStatus.DEQUEUED.value: "EXECUTING",
    RunStatus.WAITING.value: "FROZEN",
}
#: attempt statuses the 3.x SDK knows (PENDING EXECUTING PAUSED COMPLETED FAILED CANCELED)
_V3_ATTEMPT_STATUS = {"TIMED_OUT": "FAILED", "CRASHED": "FAILED", "RELEASED": "CANCELED"}


def iso(value: datetime | None) -> str | None:
    return None if value is None else iso_millis(value)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def wait_reason_object(reason: WaitReason | None) -> dict[str, Any] | None:
    """Why a run that has not started waits (Triggerfish): ``{code, message, until?}``."""
    if reason is None:
        return None
    return _compact(
        {
            "code": str(reason.code),
            "message": reason.message,
            "until": iso(to_datetime(reason.until)) if reason.until is not None else None,
        }
    )


def run_item(
    row: RunRecord,
    tags: list[str],
    env_slug: str,
    env_id: str,
    reason: WaitReason | None = None,
) -> dict[str, Any]:
    """A run as ``runs.list`` returns it, plus Triggerfish's ``waitReason``."""
    status = RunStatus(row.status)
    duration_ms = 0
    if row.started_at is not None and row.finished_at is not None:
        duration_ms = int((row.finished_at - row.started_at).total_seconds() * 1000)
    return _compact(
        {
            "id": row.id,
            "status": status.value,
            "taskIdentifier": row.task_identifier,
            "idempotencyKey": row.idempotency_key_raw or row.idempotency_key,
            "version": row.locked_version,
            "isQueued": status in _QUEUED,
            "isExecuting": status in _EXECUTING,
            "isWaiting": status is RunStatus.WAITING,
            "isCompleted": status in _COMPLETED,
            "isSuccess": status is RunStatus.COMPLETED,
            "isFailed": status in _COMPLETED and status is not RunStatus.COMPLETED,
            "isCancelled": status is RunStatus.CANCELED,
            "isTest": bool(row.is_test),
            "createdAt": iso(row.created_at),
            "updatedAt": iso(row.updated_at),
            "startedAt": iso(row.started_at),
            "finishedAt": iso(row.finished_at),
            "delayedUntil": iso(row.delayed_until),
            "expiredAt": iso(row.expired_at),
            "ttl": row.ttl,
            "tags": tags,
            "attemptCount": row.attempt_count,
            "costInCents": 0,
            "baseCostInCents": 0,
            "durationMs": duration_ms,
            "metadata": row.run_metadata,
            "env": {"id": env_id, "name": env_slug},
            "queue": row.queue_name,
            "concurrencyKey": row.concurrency_key,
            "machine": row.machine,
            "batchId": row.batch_id,
            "replayedFromRunId": row.replay_of,
            "scheduleId": row.schedule_id,
            "waitReason": wait_reason_object(reason),
        }
    )


def run_object(
    detail: RunDetail, env_slug: str, env_id: str, reason: WaitReason | None = None
) -> dict[str, Any]:
    """A run as ``runs.retrieve`` returns it, plus our ``attempts`` list."""
    row = detail.run
    data = run_item(row, detail.tags, env_slug, env_id, reason)
    data.pop("env")
    data.update(
        _compact(
            {
                "depth": row.depth,
                "triggerFunction": (
                    row.trigger_function
                    if row.trigger_function in SDK_TRIGGER_FUNCTIONS
                    else "trigger"
                ),
                "triggerSource": row.trigger_function,
                "payload": row.payload,
                "output": row.output,
                "error": error_object(row.error),
                "relatedRuns": {},
                "attemptCount": row.attempt_count,
                "attempts": [attempt_object(a) for a in detail.attempts],
            }
        )
    )
    if row.output is None and RunStatus(row.status) is RunStatus.COMPLETED:
        data["output"] = None  # a task that returned None completed with output null
    return data


def error_object(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return _compact(
        {
            "message": error.get("message", ""),
            "name": error.get("name"),
            "stackTrace": error.get("stack_trace") or None,
        }
    )


def attempt_object(row: AttemptRecord) -> dict[str, Any]:
    return _compact(
        {
            "id": row.id,
            "number": row.number,
            "status": row.status,
            "workerId": row.worker_id,
            "version": row.version,
            "createdAt": iso(row.created_at),
            # the 3.x SDK requires it (``attempts[].updatedAt``)
            "updatedAt": iso(row.finished_at or row.started_at or row.created_at),
            "startedAt": iso(row.started_at),
            "finishedAt": iso(row.finished_at),
            # the 3.x SDK's name for finishedAt
            "completedAt": iso(row.finished_at),
            "error": error_object(row.error),
        }
    )


def is_v3_client(headers: Mapping[str, str]) -> bool:
    """Whether the official 3.x SDK sent the request (its ``trigger-version`` header)."""
    return headers.get("trigger-version", "").startswith("3.")


def for_v3_client(run: dict[str, Any]) -> dict[str, Any]:
    """A run (retrieve or list item) with status names the 3.x SDK's schema accepts."""
    run["status"] = _V3_RUN_STATUS.get(run["status"], run["status"])
    for attempt in run.get("attempts", ()):
        attempt["status"] = _V3_ATTEMPT_STATUS.get(attempt["status"], attempt["status"])
    return run


def log_object(row: LogRecord) -> dict[str, Any]:
    return _compact(
        {
            "id": row.id,
            "attempt": row.attempt_number,
            "ts": row.ts,
            "level": row.level,
            "stream": row.stream,
            "message": row.message,
            "fields": row.fields or None,
        }
    )


def journal_entry(row: JournalRecord) -> dict[str, Any]:
    """One durable call of a run (a span of its trace): step, wait, child run…"""
    duration = None
    if row.finished_at is not None:
        duration = int((row.finished_at - row.started_at).total_seconds() * 1000)
    return _compact(
        {
            "index": row.seq + 1,
            "kind": row.kind,
            "name": row.name,
            "status": row.status,
            "failures": row.failures or None,
            "error": row.error,
            "startedAt": iso(row.started_at),
            "finishedAt": iso(row.finished_at),
            "durationMs": duration,
            "display": row.display or None,
            "tries": [_step_try(t) for t in row.tries] if row.tries else None,
        }
    )


def _step_try(entry: dict[str, Any]) -> dict[str, Any]:
    """A failed try of a step (a ``STEP_RETRIED`` span event of its trace)."""
    at = entry.get("at")
    when = to_datetime(float(at)) if at is not None else None
    return {"number": entry.get("number"), "at": iso(when), "error": entry.get("error")}


def task_object(task: RegisteredTask) -> dict[str, Any]:
    """A registered task (``GET /api/v1/tasks``), read from its newest manifest."""
    m = task.manifest
    queue = m.get("queue") or {}
    return _compact(
        {
            "id": task.id,
            "file": m.get("file"),
            "entry": m.get("entry"),
            "queue": _compact(
                {
                    "name": queue.get("name"),
                    "concurrencyLimit": queue.get("concurrency_limit"),
                }
            ),
            "retry": _compact(
                {
                    "maxAttempts": (m.get("retry") or {}).get("max_attempts"),
                    "factor": (m.get("retry") or {}).get("factor"),
                    "minDelay": (m.get("retry") or {}).get("min_delay"),
                    "maxDelay": (m.get("retry") or {}).get("max_delay"),
                }
            ),
            "machine": m.get("machine"),
            "maxDuration": m.get("max_duration"),
            "schedule": m.get("schedule"),
            "onEvent": m.get("on_event"),
            "payloadSchema": m.get("payload_schema"),
            "workersOnline": task.workers_online,
            "versions": [{"version": v, "registeredAt": iso(at)} for v, at in task.versions],
        }
    )
