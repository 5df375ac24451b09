"""The worker API over one WebSocket: the hot worker calls without a request each.

A busy worker talks to the server for every run (a report that claims the next
one) and a durable task for every step. Over HTTP each of those is a request
through the whole web stack on both sides; here they are frames on one
connection that stays open. The calls and their answers are the same as on the
HTTP routes of ``worker_api`` (the same bodies, validated by the same models,
handled by the same functions), so the two stay interchangeable: a worker that
cannot open the socket falls back to HTTP.

Frames are JSON text. A call::

    {"id": 7, "op": "reports", "body": {...}}                # worker-level calls
    {"id": 8, "op": "journal", "attempt_id": "...", "body": {...}}   # durable calls

and its answer, in any order (calls run concurrently, so a long-polling
``dequeue`` holds up nothing)::

    {"id": 7, "status": 200, "body": {...}}
    {"id": 8, "status": 409, "error": "..."}

``{"id": 7, "op": "cancel"}`` ends call 7 unanswered (a worker that stops
gives up its long poll this way, as an HTTP client would hang up).

The connection authenticates with the same ``Authorization: Bearer <secret
key>`` header as HTTP (a missing or unknown key refuses the handshake), and
every call checks the key again, so a revoked key stops working at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from triggerfish.api import worker_api as http
from triggerfish.api.errors import describe_error, describe_validation
from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.errors import AuthenticationError, TriggerfishError, UserError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/worker/v1")

Handler = Callable[[Engine, Environment, Any, str], Awaitable[Any]]


def _worker_call(
    model: type[BaseModel], fn: Callable[[Any, Engine, Environment], Awaitable[Any]]
) -> tuple[type[BaseModel], Handler]:
    async def handle(engine: Engine, env: Environment, body: Any, _attempt: str) -> Any:
        return await fn(body, engine, env)

    return model, handle


def _attempt_call(
    model: type[BaseModel], fn: Callable[[str, Any, Engine, Environment], Awaitable[Any]]
) -> tuple[type[BaseModel], Handler]:
    async def handle(engine: Engine, env: Environment, body: Any, attempt: str) -> Any:
        if not attempt:
            raise UserError("attempt_id: required for a durable call")
        return await fn(attempt, body, engine, env)

    return model, handle


#: op -> (body model, handler); the handlers are the HTTP routes' own functions
_CALLS: dict[str, tuple[type[BaseModel], Handler]] = {
    "reports": _worker_call(http.ReportsBody, http.reports),
    "heartbeat": _worker_call(http.HeartbeatBody, http.heartbeat),
    "journal": _attempt_call(http.JournalBody, http.journal),
    "blob": _attempt_call(http.BlobBody, http.blob),
    "wait": _attempt_call(http.WaitBody, http.wait),
    "complete_token": _attempt_call(http.CompleteTokenBody, http.complete_token),
    "send_event": _attempt_call(http.SendEventBody, http.send_event),
    "kv_get": _attempt_call(http.KvBody, http.kv_get),
    "kv_set": _attempt_call(http.KvBody, http.kv_set),
    "kv_delete": _attempt_call(http.KvBody, http.kv_delete),
}


class _Connection:
    """One worker's socket: runs each call in its own task and sends the answers."""

    def __init__(self, socket: WebSocket, engine: Engine, key: str) -> None:
        self.socket = socket
        self.engine = engine
        self.key = key
        self.closed = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._calls: dict[Any, asyncio.Task[None]] = {}  # by call id

    async def serve(self) -> None:
        try:
            while True:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is None:
                    refused = UserError("a call is a JSON text frame, not a binary one")
                    self._spawn(None, self._refuse(None, refused))
                    continue
                self._start(message["text"])
        except WebSocketDisconnect:
            pass
        finally:
            self.closed.set()
            for task in list(self._calls.values()):
                task.cancel()

    def _start(self, frame: str) -> None:
        try:
            call = json.loads(frame)
            if not isinstance(call, dict):
                raise UserError("a call is a JSON object with id, op and body")
        except (ValueError, UserError) as exc:
            self._spawn(None, self._refuse(None, exc))
            return
        if call.get("op") == "cancel":
            # the worker gave up on a call (a long poll, when it stops): end it here too
            task = self._calls.get(call.get("id"))
            if task is not None:
                task.cancel()
            return
        self._spawn(call.get("id"), self._answer(call))

    def _spawn(self, call_id: Any, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        key = call_id if call_id is not None and call_id not in self._calls else object()
        self._calls[key] = task
        task.add_done_callback(lambda _: self._calls.pop(key, None))

    async def _answer(self, call: dict[str, Any]) -> None:
        try:
            answer = {"id": call.get("id"), "status": 200, "body": await self._run(call)}
        except Exception as exc:  # every call gets an answer, never a dropped frame
            await self._refuse(call.get("id"), exc)
            return
        await self._send(answer)

    async def _refuse(self, call_id: Any, exc: Exception) -> None:
        status, message = _describe(exc)
        await self._send({"id": call_id, "status": status, "error": message})

    async def _run(self, call: dict[str, Any]) -> Any:
        op = call.get("op")
        # the key is checked on every call (cached), so a revoked key stops working at once
        env = await self.engine.environments.authenticate(self.key)
        if op == "dequeue":
            return await self._dequeue(env, http.DequeueBody.model_validate(call.get("body")))
        if op not in _CALLS:
            raise UserError(f"op: unknown call {op!r}; known: dequeue, {', '.join(_CALLS)}")
        model, handle = _CALLS[str(op)]
        body = model.model_validate(call.get("body"))
        return await handle(self.engine, env, body, str(call.get("attempt_id") or ""))

    async def _dequeue(self, env: Environment, body: http.DequeueBody) -> dict[str, Any]:
        """A long poll, like ``POST /dequeue``; it gives up when the socket closes."""
        engine = self.engine
        worker = await engine.workers.identity(env.id, body.worker_id)
        wait = min(body.wait, engine.res.settings.dequeue_wait)

        async def gone() -> bool:
            return self.closed.is_set()

        rows = await engine.dequeue.claim_or_wait(
            worker, body.max, wait, gone=gone, start=body.start
        )
        return {"runs": await http.jobs(engine, env, rows)}

    async def _send(self, answer: dict[str, Any]) -> None:
        text = json.dumps(answer, separators=(",", ":"), default=str)
        async with self._send_lock:
            # the worker may be gone; its calls are then answered by no one, as over HTTP
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await self.socket.send_text(text)


def _describe(exc: Exception) -> tuple[int, str]:
    """The status and message the HTTP routes would answer for ``exc``."""
    if isinstance(exc, ValidationError):
        return describe_validation(exc.errors())
    if isinstance(exc, json.JSONDecodeError):
        return 400, f"malformed JSON frame: {exc}"
    if isinstance(exc, TriggerfishError):
        return describe_error(exc)
    log.error("unexpected error in a worker call", exc_info=exc)
    return 500, "internal error"


@router.websocket("/socket")
async def socket(websocket: WebSocket) -> None:
    engine: Engine = websocket.app.state.engine
    scheme, _, key = websocket.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError("send `Authorization: Bearer <secret key>`")
        await engine.environments.authenticate(key.strip())
    except AuthenticationError:
        await websocket.close(code=1008)  # before accept: the handshake is refused (403)
        return
    await websocket.accept()
    await _Connection(websocket, engine, key.strip()).serve()
