"""Triggerfish: durable background jobs and workflows for Python.

Declare tasks with :func:`task`, trigger them from your app, and let a worker
run them with retries, isolation and heartbeats::

    from triggerfish import task, retry, logger

    @task(id="hello-world", retry=retry(max_attempts=3))
    async def hello_world(payload: dict, ctx) -> dict:
        logger.info("greeting", who=payload.get("who"))
        return {"message": f"Hello {payload.get('who', 'Stranger')}"}

    handle = hello_world.trigger({"who": "Ada"})
    run = triggerfish.runs.poll(handle.id, timeout=30)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from triggerfish import schedules
from triggerfish._domain.retry import RetryPolicy, retry
from triggerfish._version import __version__ as __version__
from triggerfish.errors import (
    AbortTaskRunError,
    ApiError,
    ConnectionLost,
    KeyRejected,
    NonDeterminismError,
    PayloadValidationError,
    RunSuspended,
    RunTimeout,
    ServerUnreachable,
    StepFailedError,
    TriggerfishError,
    WrongEnvironment,
)
from triggerfish.sdk._client import Run, RunPage, Triggerfish, _DefaultNamespace
from triggerfish.sdk._context import Context, StepInfo
from triggerfish.sdk._envvars import envvars
from triggerfish.sdk._events import events, kv
from triggerfish.sdk._hooks import hooks
from triggerfish.sdk._idempotency import idempotency_keys
from triggerfish.sdk._logger import logger
from triggerfish.sdk._metadata import metadata
from triggerfish.sdk._queue import Queue, queue
from triggerfish.sdk._step import step
from triggerfish.sdk._streams import streams
from triggerfish.sdk._task import ErrorDecision, RunHandle, Task, task
from triggerfish.sdk._wait import BatchItem, WaitFailedError, WaitResult, WaitToken, wait

if TYPE_CHECKING:
    from triggerfish.sdk._auth import Auth
    from triggerfish.sdk._client import Batches, Queues, Runs, Tasks

    auth: Auth
    batches: Batches
    queues: Queues
    runs: Runs
    tasks: Tasks
else:
    #: the default client's public access tokens: ``triggerfish.auth.create_public_token``
    auth = _DefaultNamespace("auth")
    #: the default client's batches API: ``triggerfish.batches.retrieve(batch.id)``
    batches = _DefaultNamespace("batches")
    #: the default client's runs API: ``triggerfish.runs.retrieve(id)``
    runs = _DefaultNamespace("runs")
    #: the default client's tasks API: ``triggerfish.tasks.trigger("id", payload)``
    tasks = _DefaultNamespace("tasks")
    #: the default client's queues API: ``triggerfish.queues.pause("emails")``
    queues = _DefaultNamespace("queues")

__all__ = [
    "AbortTaskRunError",
    "ApiError",
    "BatchItem",
    "ConnectionLost",
    "Context",
    "ErrorDecision",
    "KeyRejected",
    "NonDeterminismError",
    "PayloadValidationError",
    "Queue",
    "RetryPolicy",
    "Run",
    "RunHandle",
    "RunPage",
    "RunSuspended",
    "RunTimeout",
    "ServerUnreachable",
    "StepFailedError",
    "StepInfo",
    "Task",
    "Triggerfish",
    "TriggerfishError",
    "WaitFailedError",
    "WaitResult",
    "WaitToken",
    "WrongEnvironment",
    "auth",
    "batches",
    "envvars",
    "events",
    "hooks",
    "idempotency_keys",
    "kv",
    "logger",
    "metadata",
    "queue",
    "queues",
    "retry",
    "runs",
    "schedules",
    "step",
    "streams",
    "task",
    "tasks",
    "wait",
]
