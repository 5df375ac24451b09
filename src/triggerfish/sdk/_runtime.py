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
import json
import traceback
from typing import Any

import pydantic

from triggerfish.errors import AbortTaskRunError
from triggerfish.sdk._context import (
    AttemptInfo,
    Context,
    EnvironmentInfo,
    MachineInfo,
    RunInfo,
    TaskInfo,
)
from triggerfish.sdk._machines import MACHINE_MEMORY_MB
from triggerfish.sdk._registry import TaskRegistry
from triggerfish.sdk._task import ErrorDecision, Task


class OutputNotSerializable(TypeError):
    pass


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
    registry: TaskRegistry, job: dict[str, Any], loop: asyncio.AbstractEventLoop
) -> dict[str, Any]:
    """Run one attempt of ``job`` and return its report; never raises."""
    task = registry.get(job["task_id"])
    ctx = build_context(job)
    payload: Any = job.get("payload")
    try:
        payload = task.validate_payload(payload)
        args = (payload, ctx) if task.takes_ctx else (payload,)
        result = loop.run_until_complete(task.fn(*args)) if task.is_async else task.fn(*args)
        return {"ok": True, "output": to_json_value(result, task.id)}
    except AbortTaskRunError as exc:
        return {"ok": False, "error": describe_error(exc, "ABORT"), "decision": None}
    except SystemExit as exc:
        error = describe_error(exc, "USER")
        error["message"] = f"task called sys.exit({exc.code!r})"
        return _failure(task, payload, exc, ctx, error)
    except MemoryError as exc:
        return {"ok": False, "error": describe_error(exc, "OOM"), "decision": None}
    except Exception as exc:
        return _failure(task, payload, exc, ctx, describe_error(exc, "USER"))


def _failure(
    task: Task[Any, Any],
    payload: Any,
    exc: BaseException,
    ctx: Context,
    error: dict[str, Any],
) -> dict[str, Any]:
    decision: ErrorDecision | None = None
    if task.catch_error is not None:
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


def describe_error(exc: BaseException, kind: str) -> dict[str, Any]:
    return {
        "name": type(exc).__name__,
        "message": str(exc),
        "stack_trace": "".join(traceback.format_exception(exc)),
        "kind": kind,
    }


def to_json_value(value: Any, task_id: str) -> Any:
    """``value`` as plain JSON data; pydantic models are dumped."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise OutputNotSerializable(
            f"task {task_id!r} returned a {type(value).__name__}, which is not "
            f"JSON-serialisable ({exc}); return JSON data or a pydantic model"
        ) from None
