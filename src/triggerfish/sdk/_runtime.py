"""Calls a task function for one attempt and turns what happened into its outcome.

Runs inside the isolated task process, and answers with one of the outcomes of
``_domain/attempts.py``: ``Succeeded(output)``, ``Failed(error, decision)``,
``Suspended()`` (the run now waits durably) or ``Abandoned(reason)`` (the
server stopped accepting this attempt's records).

An error's ``kind`` is ``USER`` (an exception, retried per policy), ``ABORT``
(``AbortTaskRunError`` and the like: no retry) or ``OOM`` (``MemoryError``);
the worker sets ``OOM``, ``TIMEOUT``, ``CRASH`` and ``CANCELED`` itself when it
had to stop the task process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import os
import traceback
from collections.abc import Callable
from typing import Any, assert_never

from triggerfish._domain.attempts import (
    Abandoned,
    AttemptOutcome,
    Decision,
    ErrorInfo,
    Failed,
    Job,
    Succeeded,
    Suspended,
)
from triggerfish._domain.machines import MACHINE_MEMORY_MB
from triggerfish._domain.states import FailureKind
from triggerfish.errors import AbortTaskRunError, NonDeterminismError, RunSuspended, StepFailedError
from triggerfish.sdk import _durable, _logger, _tracing
from triggerfish.sdk._context import (
    AttemptInfo,
    Context,
    EnvironmentInfo,
    MachineInfo,
    RunInfo,
    TaskInfo,
)
from triggerfish.sdk._durable import AttemptAbandoned, DurableRun, Transport
from triggerfish.sdk._hooks import Hooks, Outcome, global_hooks
from triggerfish.sdk._registry import TaskRegistry
from triggerfish.sdk._task import ErrorDecision, Task
from triggerfish.sdk._values import OutputNotSerializable
from triggerfish.sdk._values import to_json_value as _to_json

__all__ = ["OutputNotSerializable", "build_context", "error_info", "run_attempt"]

#: waits up to this many seconds sleep in place; longer ones suspend the run
SUSPEND_THRESHOLD_ENV = "TRIGGERFISH_SUSPEND_THRESHOLD"


def build_context(job: Job) -> Context:
    machine = job.machine or "small-1x"
    return Context(
        run=RunInfo(id=job.run_id, tags=list(job.tags)),
        task=TaskInfo(id=job.task_id),
        attempt=AttemptInfo(id=job.attempt_id, number=job.attempt_number),
        environment=EnvironmentInfo(id=job.environment.id, slug=job.environment.slug),
        machine=MachineInfo(name=machine, memory_mb=MACHINE_MEMORY_MB.get(machine, 0)),
    )


def error_info(exc: BaseException, kind: FailureKind) -> ErrorInfo:
    """``exc`` as the error an attempt reports."""
    return ErrorInfo(
        name=type(exc).__name__,
        message=str(exc),
        stack_trace="".join(traceback.format_exception(exc)),
        kind=kind,
    )


def run_attempt(
    registry: TaskRegistry,
    job: Job,
    loop: asyncio.AbstractEventLoop,
    transport: Transport | None = None,
) -> AttemptOutcome:
    """Run one attempt of ``job`` and return how it ended; never raises."""
    if not _tracing.enabled(job):
        if not _tracing.collecting(job):
            return _run_attempt(registry, job, loop, transport)
        with _tracing.attempt_context(job):
            return _run_attempt(registry, job, loop, transport)
    with _tracing.attempt_span(job, job.task_id) as span:
        outcome = _run_attempt(registry, job, loop, transport)
        _tracing.end_attempt(span, outcome)
    return outcome


def _run_attempt(
    registry: TaskRegistry,
    job: Job,
    loop: asyncio.AbstractEventLoop,
    transport: Transport | None,
) -> AttemptOutcome:
    task = registry.get(job.task_id)
    shared = global_hooks()
    hooks = None if task.hooks.empty() and shared.empty() else shared.then(task.hooks)
    # most tasks take no ctx and have no hook: skip building its six objects
    wants_ctx = task.takes_ctx or task.catch_error is not None or hooks is not None
    ctx = build_context(job) if wants_ctx else None
    payload: Any = job.payload
    durable = DurableRun(
        run_id=job.run_id,
        attempt_id=job.attempt_id,
        task_id=task.id,
        retry=task.retry,
        is_async=task.is_async,
        transport=transport or _no_transport,
        loop=loop,
        journal={int(e["seq"]): dict(e) for e in job.journal},
        suspend_threshold=float(os.environ.get(SUSPEND_THRESHOLD_ENV, "5")),
        trace_id=job.trace_id,
        traced=_tracing.enabled(job),
        collecting=_tracing.collecting(job),
    )
    token = _durable.activate(durable)
    try:
        payload = task.validate_payload(payload)
        args = (payload, ctx) if task.takes_ctx else (payload,)
        if hooks is None:
            result = loop.run_until_complete(task.fn(*args)) if task.is_async else task.fn(*args)
        else:
            result = _with_hooks(hooks, task, job, payload, ctx or build_context(job), loop, args)
        return Succeeded(to_json_value(result, task.id))
    except RunSuspended:
        return Suspended()
    except AttemptAbandoned as exc:
        return Abandoned(str(exc))
    except (AbortTaskRunError, NonDeterminismError, StepFailedError) as exc:
        # a replay would end the same way: retrying the run cannot help
        return Failed(error_info(exc, "ABORT"))
    except SystemExit as exc:
        error = dataclasses.replace(
            error_info(exc, "USER"), message=f"task called sys.exit({exc.code!r})"
        )
        return _failure(task, payload, exc, ctx, error)
    except MemoryError as exc:
        return Failed(error_info(exc, "OOM"))
    except Exception as exc:
        return _failure(task, payload, exc, ctx, error_info(exc, "USER"))
    finally:
        _durable.deactivate(token)


#: journal kinds of the durable waits an attempt may resume after
_WAITS = frozenset({"wait", "token.wait", "event.wait", "child", "batch"})
#: errors no retry can fix (run_attempt answers them with ABORT)
_FINAL_ERRORS = (AbortTaskRunError, NonDeterminismError, StepFailedError)


def _with_hooks(
    hooks: Hooks,
    task: Task[Any, Any],
    job: Job,
    payload: Any,
    ctx: Context,
    loop: asyncio.AbstractEventLoop,
    args: tuple[Any, ...],
) -> Any:
    """The task's body inside its lifecycle hooks and middleware (``sdk/_hooks.py``)."""

    def call(fn: Any, *more: Any) -> Any:
        value = fn(payload, *more, ctx)
        return loop.run_until_complete(value) if inspect.isawaitable(value) else value

    def quietly(name: str, fns: list[Any], *more: Any) -> None:
        for fn in fns:
            try:
                call(fn, *more)
            except Exception as exc:
                _logger.logger.error(f"{name} hook {_name(fn)} raised {exc!r}; ignored")

    last = job.journal[-1] if job.journal else None
    resumed = last is not None and last.get("kind") in _WAITS and last.get("status") == "OK"

    def attempt() -> Any:
        try:
            for fn in hooks.init:
                call(fn)
            if job.attempt_number == 1:
                for fn in hooks.on_start:
                    call(fn)
            if resumed:
                for fn in hooks.on_resume:
                    call(fn)
            try:
                body = task.fn(*args)
                result = loop.run_until_complete(body) if task.is_async else body
            except RunSuspended:
                quietly("on_wait", hooks.on_wait)
                raise
            except Exception as exc:
                if _is_last_failure(task, job, exc):
                    quietly("on_failure", hooks.on_failure, exc)
                    quietly("on_complete", hooks.on_complete, Outcome(False, error=exc))
                raise
            quietly("on_success", hooks.on_success, result)
            quietly("on_complete", hooks.on_complete, Outcome(True, output=result))
            return result
        finally:
            quietly("cleanup", hooks.cleanup)

    chain: Callable[[], Any] = attempt
    for mw in reversed(hooks.middleware):
        chain = functools.partial(mw, payload, ctx, chain)
    return chain()


def _is_last_failure(task: Task[Any, Any], job: Job, exc: Exception) -> bool:
    if isinstance(exc, _FINAL_ERRORS):
        return True
    limit = job.max_attempts if job.max_attempts is not None else task.retry.max_attempts
    return job.attempt_number >= limit


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))


def _no_transport(op: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"_status": 503, "error": "durable calls need a worker (no transport in this process)"}


def _failure(
    task: Task[Any, Any],
    payload: Any,
    exc: BaseException,
    ctx: Context | None,
    error: ErrorInfo,
) -> Succeeded | Failed:
    """A failed attempt, as the task's ``catch_error`` hook (if any) decides."""
    if task.catch_error is None:
        return Failed(error)
    assert ctx is not None  # run_attempt builds it for every task with a hook
    decision: ErrorDecision | None = None
    try:
        decision = task.catch_error(payload, exc, ctx)
    except Exception as hook_exc:
        error = _noted(error, f"catch_error hook raised {hook_exc!r}; using the retry policy")
    if decision is None:
        return Failed(error)
    match decision.action:
        case "skip":
            try:
                return Succeeded(to_json_value(decision.output, task.id))
            except OutputNotSerializable as bad:
                return Failed(_noted(error, f"catch_error skip output rejected: {bad}"))
        case "retry" | "fail" as action:
            return Failed(error, Decision(action, decision.delay))
        case unknown:
            assert_never(unknown)


def _noted(error: ErrorInfo, note: str) -> ErrorInfo:
    return dataclasses.replace(error, message=f"{error.message} ({note})")


def to_json_value(value: Any, task_id: str) -> Any:
    """``value`` as plain JSON data; pydantic models are dumped."""
    return _to_json(value, f"task {task_id!r}")
