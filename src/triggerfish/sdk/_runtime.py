"""Calls a task function for one attempt and turns what happened into a report.

Runs inside the isolated child process. The report is a plain dict that the
worker forwards to the server:

- ``{"ok": True, "output": <json>}``
- ``{"ok": False, "error": {"name", "message", "stack_trace", "kind"},
  "decision": {"action", "delay", "output"} | None}``

``kind`` is one of ``USER`` (an exception, retried per policy), ``ABORT``
(``AbortTaskRunError``: no retry), ``OOM``, ``TIMEOUT``, ``CRASH`` (the last
three are set by the worker when it had to stop the child).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from triggerfish._domain.machines import MACHINE_MEMORY_MB
from triggerfish.errors import AbortTaskRunError, NonDeterminismError, RunSuspended, StepFailedError
from triggerfish.sdk import _durable
from triggerfish.sdk._context import (
    AttemptInfo,
    Context,
    EnvironmentInfo,
    MachineInfo,
    RunInfo,
    TaskInfo,
)
from triggerfish.sdk._durable import AttemptAbandoned, DurableRun, Transport
from triggerfish.sdk._registry import TaskRegistry
from triggerfish.sdk._task import ErrorDecision, Task
from triggerfish.sdk._values import OutputNotSerializable, describe_error
from triggerfish.sdk._values import to_json_value as _to_json

__all__ = ["OutputNotSerializable", "build_context", "describe_error", "run_attempt"]

#: waits up to this many seconds sleep in place; longer ones suspend the run
SUSPEND_THRESHOLD_ENV = "TRIGGERFISH_SUSPEND_THRESHOLD"


def build_context(job: dict[str, Any]) -> Context:
    machine = job.get("machine") or "small-1x"
    return Context(
        run=RunInfo(id=job["run_id"], tags=list(job.get("tags") or [])),
        task=TaskInfo(id=job["task_id"]),
        attempt=AttemptInfo(id=job["attempt_id"], number=job["attempt_number"]),
        environment=EnvironmentInfo(**job["environment"]),
        machine=MachineInfo(name=machine, memory_mb=MACHINE_MEMORY_MB.get(machine, 0)),
    )


def run_attempt(
    registry: TaskRegistry,
    job: dict[str, Any],
    loop: asyncio.AbstractEventLoop,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Run one attempt of ``job`` and return its report; never raises.

    Besides ``ok``/``error`` reports, ``{"suspended": True}`` means the run now
    waits durably and ``{"abandoned": True}`` that the server stopped accepting
    this attempt's records; the worker reports neither.
    """
    task = registry.get(job["task_id"])
    # most tasks take no ctx and have no hook: skip building its six objects
    ctx = build_context(job) if task.takes_ctx or task.catch_error is not None else None
    payload: Any = job.get("payload")
    durable = DurableRun(
        run_id=job["run_id"],
        attempt_id=job["attempt_id"],
        task_id=task.id,
        retry=task.retry,
        is_async=task.is_async,
        transport=transport or _no_transport,
        loop=loop,
        journal={int(e["seq"]): dict(e) for e in job.get("journal") or []},
        suspend_threshold=float(os.environ.get(SUSPEND_THRESHOLD_ENV, "5")),
    )
    token = _durable.activate(durable)
    try:
        payload = task.validate_payload(payload)
        args = (payload, ctx) if task.takes_ctx else (payload,)
        result = loop.run_until_complete(task.fn(*args)) if task.is_async else task.fn(*args)
        return {"ok": True, "output": to_json_value(result, task.id)}
    except RunSuspended:
        return {"suspended": True}
    except AttemptAbandoned as exc:
        return {"abandoned": True, "reason": str(exc)}
    except (AbortTaskRunError, NonDeterminismError, StepFailedError) as exc:
        # a replay would end the same way: retrying the run cannot help
        return {"ok": False, "error": describe_error(exc, "ABORT"), "decision": None}
    except SystemExit as exc:
        error = describe_error(exc, "USER")
        error["message"] = f"task called sys.exit({exc.code!r})"
        return _failure(task, payload, exc, ctx, error)
    except MemoryError as exc:
        return {"ok": False, "error": describe_error(exc, "OOM"), "decision": None}
    except Exception as exc:
        return _failure(task, payload, exc, ctx, describe_error(exc, "USER"))
    finally:
        _durable.deactivate(token)


def _no_transport(op: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"_status": 503, "error": "durable calls need a worker (no transport in this process)"}


def _failure(
    task: Task[Any, Any],
    payload: Any,
    exc: BaseException,
    ctx: Context | None,
    error: dict[str, Any],
) -> dict[str, Any]:
    decision: ErrorDecision | None = None
    if task.catch_error is not None:
        assert ctx is not None  # run_attempt builds it for every task with a hook
        try:
            decision = task.catch_error(payload, exc, ctx)
        except Exception as hook_exc:
            error["message"] += f" (catch_error hook raised {hook_exc!r}; using the retry policy)"
    if decision is not None and decision.action == "skip":
        try:
            return {"ok": True, "output": to_json_value(decision.output, task.id)}
        except OutputNotSerializable as bad:
            error["message"] += f" (catch_error skip output rejected: {bad})"
            decision = None
    return {
        "ok": False,
        "error": error,
        "decision": ({"action": decision.action, "delay": decision.delay} if decision else None),
    }


def to_json_value(value: Any, task_id: str) -> Any:
    """``value`` as plain JSON data; pydantic models are dumped."""
    return _to_json(value, f"task {task_id!r}")
