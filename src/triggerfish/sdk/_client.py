"""The HTTP client: trigger tasks and read runs from any Python app.

Each API call is described once (a :class:`_Call`) and sent either by the
sync or the async transport, so the two faces cannot drift apart.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from triggerfish.errors import ApiError, RunTimeout
from triggerfish.sdk._socket import NOT_SENT, AsyncSocket, SyncSocket
from triggerfish.sdk._task import RunHandle

if TYPE_CHECKING:
    # imported on first use: task processes that never call the API stay small
    import httpx

T = TypeVar("T")

DEFAULT_API_URL = "http://127.0.0.1:3030"


class RunError(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    message: str
    name: str | None = None
    stack_trace: str | None = Field(default=None, alias="stackTrace")


class Attempt(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    number: int
    status: str
    started_at: datetime | None = Field(default=None, alias="startedAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    error: RunError | None = None


class WaitReason(BaseModel):
    """Why a run is not running yet: ``code`` (``QUEUE_LIMIT``, ``CONCURRENCY_KEY_LIMIT``,
    ``ENVIRONMENT_LIMIT``, ``RATE_LIMITED``, ``QUEUE_PAUSED``, ``DELAYED``, ``DEBOUNCED``,
    ``RETRY_BACKOFF``, ``WAITING_FOR_VERSION``, ``WAITING_FOR_WORKER``,
    ``WAITING_FOR_SLOT``), a sentence, and when it ends if known."""

    code: str
    message: str
    until: datetime | None = None


class RateLimit(BaseModel):
    limit: int
    period: float


class QueueInfo(BaseModel):
    """A queue, its limits and how many of its runs are running and waiting."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    name: str
    type: str
    running: int
    queued: int
    paused: bool
    concurrency_limit: int | None = Field(default=None, alias="concurrencyLimit")
    concurrency_key_limit: int | None = Field(default=None, alias="concurrencyKeyLimit")
    rate_limit: RateLimit | None = Field(default=None, alias="rateLimit")


class Run(BaseModel):
    """A run as the API returns it. ``output`` and ``error`` are set once it finished."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    status: str
    task_identifier: str = Field(alias="taskIdentifier")
    payload: Any = None
    output: Any = None
    error: RunError | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    attempt_count: int = Field(default=0, alias="attemptCount")
    attempts: list[Attempt] = Field(default_factory=list)
    is_completed: bool = Field(alias="isCompleted")
    is_success: bool = Field(alias="isSuccess")
    is_failed: bool = Field(alias="isFailed")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
    started_at: datetime | None = Field(default=None, alias="startedAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    duration_ms: int = Field(default=0, alias="durationMs")
    machine: str | None = None
    queue: str | None = None
    #: what a WAITING run waits for: ``{"type": "DURATION", "until"}``,
    #: ``{"type": "TOKEN", "tokenId"}``, ``{"type": "RUN", "runId"}``,
    #: ``{"type": "EVENT", "event", "filter"}`` (plus ``timeoutAt``)
    waiting_for: list[dict[str, Any]] = Field(default_factory=list, alias="waitingFor")
    #: the run's durable calls in order (``kind``, ``name``, ``status``, times)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    concurrency_key: str | None = Field(default=None, alias="concurrencyKey")
    batch_id: str | None = Field(default=None, alias="batchId")
    replayed_from_run_id: str | None = Field(default=None, alias="replayedFromRunId")
    delayed_until: datetime | None = Field(default=None, alias="delayedUntil")
    #: why a run that has not started yet is waiting (None once it started)
    wait_reason: WaitReason | None = Field(default=None, alias="waitReason")


class RunPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    data: list[Run]
    next_cursor: str | None = None
    previous_cursor: str | None = None


class LogLine(BaseModel):
    id: int
    attempt: int
    ts: float
    level: str
    stream: str
    message: str
    fields: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    #: the same call as (op, body) for the client socket, if it can go there
    over_socket: tuple[str, dict[str, Any]] | None = None


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text or response.reason_phrase
    raise ApiError(response.status_code, message, response.text)


class _Transport:
    """Sends calls with one shared sync and one shared async HTTP connection pool,
    and triggers over the client socket when there is one (``sdk/_socket.py``)."""

    #: paths whose full URL is kept (a trigger's path repeats; a run's does not)
    URL_CACHE_SIZE = 256

    def __init__(self, api_url: str, secret_key: str, timeout: float, socket: bool) -> None:
        self.api_url = api_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {secret_key}"}
        self._timeout = timeout
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._urls: dict[str, httpx.URL] = {}
        self._sync_socket = SyncSocket(api_url, secret_key, timeout) if socket else None
        self._async_socket = AsyncSocket(api_url, secret_key, timeout) if socket else None

    def _url(self, client: httpx.Client | httpx.AsyncClient, path: str) -> httpx.URL:
        # httpx parses a relative URL and merges it with the base URL on every
        # request (about a fifth of a trigger's client CPU); an absolute URL
        # object passes through as it is
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= self.URL_CACHE_SIZE:
                self._urls.clear()
            url = self._urls[path] = client.build_request("GET", path).url
        return url

    def send(self, call: _Call[T]) -> T:
        if call.over_socket is not None and self._sync_socket is not None:
            answer = self._sync_socket.call(*call.over_socket)
            if answer is not NOT_SENT:
                return call.parse(answer)
        if self._sync is None:
            import httpx

            self._sync = httpx.Client(
                base_url=self.api_url, headers=self._headers, timeout=self._timeout
            )
        response = self._sync.request(
            call.method,
            self._url(self._sync, call.path),
            json=call.json,
            params=call.params or None,  # an empty mapping still costs a URL rebuild
        )
        _raise_for(response)
        return call.parse(response.json())

    async def send_async(self, call: _Call[T]) -> T:
        if call.over_socket is not None and self._async_socket is not None:
            answer = await self._async_socket.call(*call.over_socket)
            if answer is not NOT_SENT:
                return call.parse(answer)
        if self._async is None:
            import httpx

            self._async = httpx.AsyncClient(
                base_url=self.api_url, headers=self._headers, timeout=self._timeout
            )
        response = await self._async.request(
            call.method,
            self._url(self._async, call.path),
            json=call.json,
            params=call.params or None,
        )
        _raise_for(response)
        return call.parse(response.json())

    def close(self) -> None:
        if self._sync_socket is not None:
            self._sync_socket.close()
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async_socket is not None:
            await self._async_socket.close()
        if self._async is not None:
            await self._async.aclose()
            self._async = None


def _trigger_call(task_id: str, payload: Any, options: dict[str, Any]) -> _Call[RunHandle]:
    from urllib.parse import quote

    body = {"payload": payload, "options": _wire_options(options)}
    return _Call(
        "POST",
        f"/api/v1/tasks/{quote(task_id, safe='')}/trigger",
        lambda answer: RunHandle(id=answer["id"], is_cached=bool(answer.get("isCached"))),
        json=body,
        over_socket=("trigger", {"task": task_id, **body}),
    )


_OPTION_NAMES = {
    "tags": "tags",
    "metadata": "metadata",
    "idempotency_key": "idempotencyKey",
    "idempotency_key_ttl": "idempotencyKeyTTL",
    "machine": "machine",
    "max_attempts": "maxAttempts",
    "max_duration": "maxDuration",
    "concurrency_key": "concurrencyKey",
    "delay": "delay",
    "ttl": "ttl",
    "priority": "priority",
    "debounce": "debounce",
}


def _wire_debounce(value: dict[str, Any]) -> dict[str, Any]:
    """``{"key", "delay", "mode"?, "max_delay"?}`` as the wire's ``debounce``."""
    unknown = set(value) - {"key", "delay", "mode", "max_delay", "maxDelay"}
    if unknown or "key" not in value or "delay" not in value:
        raise TypeError(
            "debounce: pass {'key': ..., 'delay': '5s', 'mode': 'trailing'|'leading', "
            "'max_delay': '1m'}"
        )
    wire = {k: v for k, v in value.items() if k != "max_delay"}
    if value.get("max_delay") is not None:
        wire["maxDelay"] = value["max_delay"]
    return wire


def _wire_options(options: dict[str, Any]) -> dict[str, Any]:
    wire: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name == "queue":
            wire["queue"] = {"name": getattr(value, "name", value)}
        elif name == "debounce":
            wire["debounce"] = _wire_debounce(value)
        elif name in _OPTION_NAMES:
            wire[_OPTION_NAMES[name]] = value.isoformat() if isinstance(value, datetime) else value
        else:
            known = ", ".join(sorted([*_OPTION_NAMES, "queue"]))
            raise TypeError(f"unknown trigger option {name!r}; known options: {known}")
    return wire


class Tasks:
    """``client.tasks``: trigger by task id, without importing the task's code."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> RunHandle:
        """Example: ``triggerfish.tasks.trigger("hello-world", {"who": "Ada"})``."""
        return self._t.send(_trigger_call(task_id, payload, options))

    async def trigger_async(self, task_id: str, payload: Any = None, **options: Any) -> RunHandle:
        return await self._t.send_async(_trigger_call(task_id, payload, options))

    @staticmethod
    def _batch(items: builtins.list[dict[str, Any]]) -> _Call[BatchHandle]:
        wire = []
        for i, item in enumerate(items):
            if "task" not in item:
                raise TypeError(f"items[{i}]: each item needs a 'task' (and 'payload', 'options')")
            wire.append(
                {
                    "task": item["task"],
                    "payload": item.get("payload"),
                    "options": _wire_options(dict(item.get("options") or {})),
                }
            )
        return _Call(
            "POST",
            "/api/v2/tasks/batch",
            lambda b: BatchHandle(id=b["id"], run_ids=list(b.get("runs") or [])),
            json={"items": wire},
        )

    def batch_trigger(self, items: builtins.list[dict[str, Any]]) -> BatchHandle:
        """Trigger up to 1,000 runs in one call (one transaction on the server).

        Example::

            batch = triggerfish.tasks.batch_trigger(
                [{"task": "send-email", "payload": {"to": a}} for a in addresses]
            )
            print(batch.id, len(batch.run_ids))
        """
        return self._t.send(self._batch(items))

    async def batch_trigger_async(self, items: builtins.list[dict[str, Any]]) -> BatchHandle:
        return await self._t.send_async(self._batch(items))


def _page(body: dict[str, Any]) -> RunPage:
    return RunPage(
        data=[Run.model_validate(item) for item in body["data"]],
        next_cursor=body["pagination"].get("next"),
        previous_cursor=body["pagination"].get("previous"),
    )


class BatchHandle(BaseModel):
    """A batch just created: its id and its runs' ids in item order."""

    id: str
    run_ids: list[str]


class Batch(BaseModel):
    """A batch and how far its runs got (``status``: PENDING, PROCESSING, COMPLETED)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    status: str
    run_count: int = Field(alias="runCount")
    runs: list[str]
    counts: dict[str, int] = Field(default_factory=dict)
    finished_count: int = Field(default=0, alias="finishedCount")


class Batches:
    """``client.batches``: read a batch (``client.tasks.batch_trigger`` creates one)."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def retrieve(self, batch_id: str) -> Batch:
        return self._t.send(_Call("GET", f"/api/v2/batches/{batch_id}", Batch.model_validate))

    async def retrieve_async(self, batch_id: str) -> Batch:
        return await self._t.send_async(
            _Call("GET", f"/api/v2/batches/{batch_id}", Batch.model_validate)
        )


class Runs:
    """``client.runs``: read, list, cancel and wait for runs."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    @staticmethod
    def _retrieve(run_id: str) -> _Call[Run]:
        return _Call("GET", f"/api/v3/runs/{run_id}", Run.model_validate)

    @staticmethod
    def _list(
        *,
        status: list[str] | str | None = None,
        task: list[str] | str | None = None,
        tag: list[str] | str | None = None,
        batch: str | None = None,
        schedule: str | None = None,
        queue: list[str] | str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        limit: int = 25,
        after: str | None = None,
        before: str | None = None,
    ) -> _Call[RunPage]:
        def csv(value: list[str] | str | None) -> str | None:
            return ",".join(value) if isinstance(value, list) else value

        def ms(value: datetime | None) -> str | None:
            return str(int(value.timestamp() * 1000)) if value else None

        params = {
            "filter[status]": csv(status),
            "filter[taskIdentifier]": csv(task),
            "filter[tag]": csv(tag),
            "filter[batch]": batch,
            "filter[schedule]": schedule,
            "filter[queue]": csv(queue),
            "filter[createdAt][from]": ms(created_from),
            "filter[createdAt][to]": ms(created_to),
            "page[size]": limit,
            "page[after]": after,
            "page[before]": before,
        }
        return _Call("GET", "/api/v1/runs", _page, params={k: v for k, v in params.items() if v})

    @staticmethod
    def _cancel(run_id: str) -> _Call[str]:
        return _Call("POST", f"/api/v2/runs/{run_id}/cancel", lambda b: str(b["id"]))

    @staticmethod
    def _logs(run_id: str, after: int) -> _Call[list[LogLine]]:
        return _Call(
            "GET",
            f"/api/v1/runs/{run_id}/logs",
            lambda b: [LogLine.model_validate(x) for x in b["data"]],
            params={"after": after},
        )

    def retrieve(self, run_id: str) -> Run:
        """Status, attempts, output, error and timestamps of a run."""
        return self._t.send(self._retrieve(run_id))

    async def retrieve_async(self, run_id: str) -> Run:
        return await self._t.send_async(self._retrieve(run_id))

    def list(self, **filters: Any) -> RunPage:
        """Runs, newest first.

        Filters: ``status``, ``task``, ``tag``; paging: ``limit``, ``after``, ``before``.
        """
        return self._t.send(self._list(**filters))

    async def list_async(self, **filters: Any) -> RunPage:
        return await self._t.send_async(self._list(**filters))

    @staticmethod
    def _replay(run_id: str, from_step: int | None) -> _Call[str]:
        body = {"fromStep": from_step} if from_step else {}
        return _Call("POST", f"/api/v1/runs/{run_id}/replay", lambda b: str(b["id"]), json=body)

    def replay(self, run_id: str, *, from_step: int | None = None) -> str:
        """Start a new run like ``run_id``; returns its id.

        With ``from_step=N`` the new run reuses the original's journal before
        step N (1-based): those steps return their recorded results and step N
        onward runs for real.

        Example::

            new_id = client.runs.replay("run_…", from_step=4)
        """
        return self._t.send(self._replay(run_id, from_step))

    async def replay_async(self, run_id: str, *, from_step: int | None = None) -> str:
        return await self._t.send_async(self._replay(run_id, from_step))

    def cancel(self, run_id: str) -> str:
        return self._t.send(self._cancel(run_id))

    @staticmethod
    def _reschedule(run_id: str, delay: str | float | datetime) -> _Call[Run]:
        value = delay.isoformat() if isinstance(delay, datetime) else delay
        return _Call(
            "POST", f"/api/v1/runs/{run_id}/reschedule", Run.model_validate, json={"delay": value}
        )

    def reschedule(self, run_id: str, delay: str | float | datetime) -> Run:
        """Move a DELAYED run: ``delay`` is a duration from now (``"30m"``) or a datetime."""
        return self._t.send(self._reschedule(run_id, delay))

    async def reschedule_async(self, run_id: str, delay: str | float | datetime) -> Run:
        return await self._t.send_async(self._reschedule(run_id, delay))

    @staticmethod
    def _update_metadata(
        run_id: str,
        metadata: dict[str, Any] | None,
        operations: builtins.list[dict[str, Any]] | None,
    ) -> _Call[dict[str, Any]]:
        body: dict[str, Any] = {}
        if metadata is not None:
            body["metadata"] = metadata
        if operations:
            body["operations"] = operations
        return _Call(
            "PUT", f"/api/v1/runs/{run_id}/metadata", lambda b: dict(b["metadata"]), json=body
        )

    def update_metadata(
        self,
        run_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        operations: builtins.list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Replace a run's metadata and/or apply operations; returns the new document.

        Example::

            client.runs.update_metadata(run_id, operations=[
                {"type": "increment", "key": "retries", "value": 1}])
        """
        return self._t.send(self._update_metadata(run_id, metadata, operations))

    def metadata(self, run_id: str) -> dict[str, Any]:
        return self._t.send(
            _Call("GET", f"/api/v1/runs/{run_id}/metadata", lambda b: dict(b["metadata"]))
        )

    def add_tags(self, run_id: str, tags: builtins.list[str]) -> None:
        """Add tags to a run (at most 10 in all)."""
        self._t.send(_Call("POST", f"/api/v1/runs/{run_id}/tags", dict, json={"tags": tags}))

    async def cancel_async(self, run_id: str) -> str:
        return await self._t.send_async(self._cancel(run_id))

    def logs(self, run_id: str, after: int = 0) -> builtins.list[LogLine]:
        return self._t.send(self._logs(run_id, after))

    async def logs_async(self, run_id: str, after: int = 0) -> builtins.list[LogLine]:
        return await self._t.send_async(self._logs(run_id, after))

    def poll(self, run_id: str, timeout: float = 60.0, interval: float = 0.25) -> Run:
        """Wait until the run is final and return it; ``RunTimeout`` after ``timeout`` s.

        Example::

            run = triggerfish.runs.poll(handle.id, timeout=30)
            print(run.status, run.output)
        """
        deadline = time.monotonic() + timeout
        while True:
            run = self.retrieve(run_id)
            if run.is_completed:
                return run
            if time.monotonic() >= deadline:
                raise RunTimeout(run_id, timeout)
            time.sleep(interval)

    async def poll_async(self, run_id: str, timeout: float = 60.0, interval: float = 0.25) -> Run:
        deadline = time.monotonic() + timeout
        while True:
            run = await self.retrieve_async(run_id)
            if run.is_completed:
                return run
            if time.monotonic() >= deadline:
                raise RunTimeout(run_id, timeout)
            await asyncio.sleep(interval)


class Token(BaseModel):
    """A waitpoint token as the API returns it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    url: str
    status: str = "WAITING"
    is_cached: bool = Field(default=False, alias="isCached")
    output: Any = None
    output_is_error: bool = Field(default=False, alias="outputIsError")
    tags: list[str] = Field(default_factory=list)


def _token(body: dict[str, Any]) -> Token:
    import json

    data = dict(body)
    if isinstance(data.get("output"), str):
        data["output"] = json.loads(data["output"])
    return Token.model_validate(data)


class Waitpoints:
    """``client.waitpoints``: create, complete and read waitpoint tokens from outside a task."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    @staticmethod
    def _create(
        timeout: str | float | None,
        tags: builtins.list[str] | None,
        idempotency_key: str | None,
    ) -> _Call[Token]:
        body = {"timeout": timeout, "tags": tags, "idempotencyKey": idempotency_key}
        return _Call(
            "POST",
            "/api/v1/waitpoints/tokens",
            _token,
            json={k: v for k, v in body.items() if v is not None},
        )

    @staticmethod
    def _complete(token_id: str, data: Any) -> _Call[bool]:
        return _Call(
            "POST",
            f"/api/v1/waitpoints/tokens/{token_id}/complete",
            lambda b: bool(b.get("success")),
            json={"data": data},
        )

    def create_token(
        self,
        *,
        timeout: str | float | None = None,
        tags: builtins.list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Token:
        """A token to hand to a task (``wait.for_token(id)``) or a person."""
        return self._t.send(self._create(timeout, tags, idempotency_key))

    def complete_token(self, token_id: str, data: Any = None) -> bool:
        """Complete a token with ``data``; completing it again is accepted and changes nothing.

        Example::

            client.waitpoints.complete_token("waitpoint_…", {"approved": True})
        """
        return self._t.send(self._complete(token_id, data))

    async def complete_token_async(self, token_id: str, data: Any = None) -> bool:
        return await self._t.send_async(self._complete(token_id, data))

    def retrieve_token(self, token_id: str) -> Token:
        return self._t.send(_Call("GET", f"/api/v1/waitpoints/tokens/{token_id}", _token))


class Events:
    """``client.events``: send events (starts subscribed tasks, wakes event waits)."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    @staticmethod
    def _send(name: str, payload: Any, event_id: str | None) -> _Call[dict[str, Any]]:
        body = {"name": name, "payload": payload, **({"id": event_id} if event_id else {})}
        return _Call("POST", "/api/v1/events", dict, json=body)

    def send(self, name: str, payload: Any = None, *, id: str | None = None) -> dict[str, Any]:
        """``{"id", "runs", "waitsResolved", "isCached"}``; see ``triggerfish.events.send``."""
        return self._t.send(self._send(name, payload, id))

    async def send_async(
        self, name: str, payload: Any = None, *, id: str | None = None
    ) -> dict[str, Any]:
        return await self._t.send_async(self._send(name, payload, id))


class Kv:
    """``client.kv``: the environment's durable key-value store."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def get_entry(self, key: str) -> dict[str, Any]:
        """``{"found": bool, "value": ...}``"""
        return self._t.send(_Call("GET", f"/api/v1/kv/{key}", dict))

    def get(self, key: str, default: Any = None) -> Any:
        entry = self.get_entry(key)
        return entry["value"] if entry.get("found") else default

    def set(self, key: str, value: Any, *, ttl: str | float | None = None) -> dict[str, Any]:
        body = {"value": value, **({"ttl": ttl} if ttl is not None else {})}
        return self._t.send(_Call("PUT", f"/api/v1/kv/{key}", dict, json=body))

    def delete(self, key: str) -> dict[str, Any]:
        return self._t.send(_Call("DELETE", f"/api/v1/kv/{key}", dict))


def _queue_path(queue: Any, suffix: str = "") -> tuple[str, dict[str, Any]]:
    from urllib.parse import quote

    name = getattr(queue, "name", queue)
    if not isinstance(name, str) or not name:
        raise TypeError("queue: pass a queue name, a queue id or a Queue object")
    return f"/api/v1/queues/{quote(name, safe='')}{suffix}", {}


def _queue_call(queue: Any, suffix: str, body: dict[str, Any] | None) -> _Call[QueueInfo]:
    path, _ = _queue_path(queue, suffix)
    return _Call("POST", path, QueueInfo.model_validate, json=body or {})


class Queues:
    """``client.queues``: inspect queues, pause/resume them and change limits at run time.

    A queue is named by its name (``"emails"``, or ``"task/<task id>"`` for a
    task's own queue), its id (``"queue_…"``) or the :class:`Queue` object.

    Example::

        triggerfish.queues.pause("emails")
        triggerfish.queues.override_concurrency_limit("emails", 10)
        print(triggerfish.queues.retrieve("emails").running)
    """

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    @staticmethod
    def _list(page: int, per_page: int) -> _Call[builtins.list[QueueInfo]]:
        return _Call(
            "GET",
            "/api/v1/queues",
            lambda b: [QueueInfo.model_validate(q) for q in b["data"]],
            params={"page": page, "perPage": per_page},
        )

    @staticmethod
    def _retrieve(queue: Any) -> _Call[QueueInfo]:
        path, _ = _queue_path(queue)
        return _Call("GET", path, QueueInfo.model_validate)

    def list(self, page: int = 1, per_page: int = 100) -> builtins.list[QueueInfo]:
        return self._t.send(self._list(page, per_page))

    async def list_async(self, page: int = 1, per_page: int = 100) -> builtins.list[QueueInfo]:
        return await self._t.send_async(self._list(page, per_page))

    def retrieve(self, queue: Any) -> QueueInfo:
        return self._t.send(self._retrieve(queue))

    async def retrieve_async(self, queue: Any) -> QueueInfo:
        return await self._t.send_async(self._retrieve(queue))

    def pause(self, queue: Any) -> QueueInfo:
        """Start no more runs of the queue (it keeps accepting them)."""
        return self._t.send(_queue_call(queue, "/pause", {"action": "pause"}))

    async def pause_async(self, queue: Any) -> QueueInfo:
        return await self._t.send_async(_queue_call(queue, "/pause", {"action": "pause"}))

    def resume(self, queue: Any) -> QueueInfo:
        return self._t.send(_queue_call(queue, "/pause", {"action": "resume"}))

    async def resume_async(self, queue: Any) -> QueueInfo:
        return await self._t.send_async(_queue_call(queue, "/pause", {"action": "resume"}))

    def override_concurrency_limit(self, queue: Any, limit: int) -> QueueInfo:
        """Replace the declared limit until :meth:`reset_concurrency_limit`."""
        body = {"concurrencyLimit": limit}
        return self._t.send(_queue_call(queue, "/concurrency/override", body))

    async def override_concurrency_limit_async(self, queue: Any, limit: int) -> QueueInfo:
        body = {"concurrencyLimit": limit}
        return await self._t.send_async(_queue_call(queue, "/concurrency/override", body))

    def reset_concurrency_limit(self, queue: Any) -> QueueInfo:
        return self._t.send(_queue_call(queue, "/concurrency/reset", None))

    async def reset_concurrency_limit_async(self, queue: Any) -> QueueInfo:
        return await self._t.send_async(_queue_call(queue, "/concurrency/reset", None))

    def set_concurrency_key_limit(self, queue: Any, limit: int | None) -> QueueInfo:
        """Slots each concurrency key may hold (``None``: the queue's limit)."""
        body = {"concurrencyKeyLimit": limit}
        return self._t.send(_queue_call(queue, "/concurrency/key-limit", body))

    def set_rate_limit(
        self, queue: Any, limit: int | None, period: str | float | None
    ) -> QueueInfo:
        """At most ``limit`` starts per ``period`` (``"1m"``); ``None, None`` removes it."""
        body = {"limit": limit, "period": period}
        return self._t.send(_queue_call(queue, "/rate-limit", body))


class Environment:
    """``client.environment``: the environment-wide concurrency limit and ``doctor``."""

    def __init__(self, transport: _Transport) -> None:
        self._t = transport

    def concurrency(self) -> dict[str, Any]:
        """``{"concurrencyLimit": int | None, "running": int}``."""
        return self._t.send(_Call("GET", "/api/v1/environment/concurrency", dict))

    def set_concurrency_limit(self, limit: int | None) -> dict[str, Any]:
        """Cap runs holding a slot across every queue (``None``: no cap)."""
        return self._t.send(
            _Call(
                "PUT",
                "/api/v1/environment/concurrency",
                dict,
                json={"concurrencyLimit": limit},
            )
        )

    def doctor(self) -> dict[str, Any]:
        """Queues, limits, workers online and the oldest queued run with its reason."""
        return self._t.send(_Call("GET", "/api/v1/doctor", dict))


class Triggerfish:
    """A client for one environment of a Triggerfish server.

    Reads ``TRIGGERFISH_API_URL`` and ``TRIGGERFISH_SECRET_KEY`` unless given.
    Triggers travel over one WebSocket kept open to the server, everything else
    over HTTP; with ``socket=False`` (or where the socket cannot be opened)
    triggers are HTTP requests too.

    Example::

        client = Triggerfish(api_url="http://127.0.0.1:3030", secret_key="tr_dev_…")
        handle = client.tasks.trigger("hello-world", {"who": "Ada"})
        print(client.runs.poll(handle.id).output)
    """

    def __init__(
        self,
        api_url: str | None = None,
        secret_key: str | None = None,
        *,
        timeout: float = 30.0,
        socket: bool = True,
    ) -> None:
        # inside a task, the attempt's credential wins over anything in the environment
        attempt_url, credential = _attempt or ("", "")
        url = api_url or attempt_url or os.environ.get("TRIGGERFISH_API_URL") or DEFAULT_API_URL
        key = secret_key or credential or os.environ.get("TRIGGERFISH_SECRET_KEY")
        if not key:
            raise ApiError(
                401,
                "no secret key: pass secret_key=... or set TRIGGERFISH_SECRET_KEY "
                "(`triggerfish dev` prints the dev key)",
            )
        self._transport = _Transport(url, key, timeout, socket)
        self.api_url = self._transport.api_url
        self.tasks = Tasks(self._transport)
        self.runs = Runs(self._transport)
        self.queues = Queues(self._transport)
        self.environment = Environment(self._transport)
        self.batches = Batches(self._transport)
        from triggerfish.sdk._schedules import Schedules

        #: create, list, change and remove cron schedules
        self.schedules = Schedules(self._transport)
        self.waitpoints = Waitpoints(self._transport)
        self.events = Events(self._transport)
        self.kv = Kv(self._transport)

    def close(self) -> None:
        self._transport.close()

    async def aclose(self) -> None:
        await self._transport.aclose()


_default: Triggerfish | None = None
#: (server URL, attempt credential) while this process runs a task's attempt
_attempt: tuple[str, str] | None = None


def default_client() -> Triggerfish:
    """The client made from the environment variables, created on first use.

    Inside a task it acts with the running attempt's credential instead (see
    :func:`bind_attempt`): the task's own environment, for as long as the
    attempt lasts, with no key for the user to pass.
    """
    global _default
    if _default is None:
        _default = Triggerfish()
    return _default


def bind_attempt(api_url: str, credential: str) -> None:
    """Make the default client act with ``credential`` (a task process, per attempt)."""
    global _attempt
    _attempt = (api_url, credential) if credential else None


def unbind_attempt() -> Triggerfish | None:
    """End :func:`bind_attempt`; returns the default client it made, for the caller to close."""
    global _attempt, _default
    made, _default = _default, None
    _attempt = None
    return made


def resolve_client(client: Triggerfish | None) -> Triggerfish:
    return client if client is not None else default_client()


class _DefaultNamespace:
    """``triggerfish.runs`` / ``triggerfish.tasks``: the default client's namespaces."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(getattr(default_client(), self._name), attr)
