"""Calls as frames on one WebSocket: the machinery both sockets share.

The worker socket (``api/worker_socket.py``) and the client socket
(``api/client_socket.py``) answer different calls, in the same way. Frames
are JSON text. A call::

    {"id": 7, "op": "reports", "body": {...}}
    {"id": 8, "op": "journal", "attempt_id": "...", "body": {...}}

and its answer, in any order (calls run concurrently, so a long call holds up
nothing)::

    {"id": 7, "status": 200, "body": {...}}
    {"id": 8, "status": 409, "error": "..."}

``{"id": 7, "op": "cancel"}`` ends call 7 unanswered (as an HTTP client would
hang up). Statuses and error messages are those the HTTP routes answer.

A connection authenticates with the same ``Authorization: Bearer <secret
key>`` header as HTTP (a missing or unknown key refuses the handshake), and
every call checks the key again (cached), so a revoked key stops working at
once.

A task process may open a socket with its attempt credential. On the client
socket it may make every call, each checked again (an ended attempt is
refused at once); on the worker socket only the calls named by
``attempt_ops`` (its journal writes), each carrying the credential of the
attempt it writes for (a task process keeps its socket from one attempt to
the next). Those calls are guarded by the engine, which refuses an attempt
that is no longer current, or of another environment, so checking the
frame's credential costs no look-up: only its signature.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from triggerfish._channel import MAX_FRAME_HEADER
from triggerfish.api.errors import describe_error, describe_validation
from triggerfish.api.validated import BadInput, loads
from triggerfish.engine import Engine
from triggerfish.engine.environments import AttemptScope, Environment
from triggerfish.errors import (
    ENVIRONMENT_HEADER,
    AuthenticationError,
    PermissionDenied,
    TriggerfishError,
    UserError,
)

log = logging.getLogger(__name__)

#: one call: (connection, authenticated environment, the call's frame) -> answer body
Op = Callable[["SocketConnection", Environment, dict[str, Any]], Awaitable[Any]]


async def serve_socket(
    websocket: WebSocket, ops: Mapping[str, Op], *, attempt_ops: frozenset[str] | None = None
) -> None:
    """Authenticate the handshake, then answer calls of ``ops`` until the peer goes.

    ``attempt_ops``: the only calls an attempt credential may make here, each
    for its own attempt (None: every call, each authenticated again).
    """
    engine: Engine = websocket.app.state.engine
    scheme, _, key = websocket.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthenticationError("send `Authorization: Bearer <secret key>`")
        env = await engine.environments.authenticate(key.strip())
        asked = websocket.headers.get(ENVIRONMENT_HEADER)
        if asked is not None and asked != env.slug:
            # the client falls back to HTTP, whose answer names both environments
            raise PermissionDenied(f"{ENVIRONMENT_HEADER}: not the key's environment")
    except (AuthenticationError, PermissionDenied):
        await websocket.close(code=1008)  # before accept: the handshake is refused (403)
        return
    # the largest frame it takes (uvicorn closes the connection on a larger one)
    limit = str(engine.res.settings.max_body_bytes).encode()
    await websocket.accept(headers=[(MAX_FRAME_HEADER.encode(), limit)])
    scoped = env if env.attempt is not None and attempt_ops is not None else None
    await SocketConnection(websocket, engine, key.strip(), ops, scoped, attempt_ops).serve()


class SocketConnection:
    """One peer's socket: runs each call in its own task and sends the answers."""

    def __init__(
        self,
        socket: WebSocket,
        engine: Engine,
        key: str,
        ops: Mapping[str, Op],
        attempt_env: Environment | None = None,
        attempt_ops: frozenset[str] | None = None,
    ) -> None:
        self.socket = socket
        self.engine = engine
        self.key = key
        self.ops = ops
        #: set on a worker socket opened with an attempt credential
        self._attempt_env = attempt_env
        self._attempt_ops = attempt_ops or frozenset()
        #: set once the peer has gone (a long call watches it)
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
            call = loads(frame, where="frame")
            if not isinstance(call, dict):
                raise UserError("a call is a JSON object with id, op and body")
            call_id = call.get("id")
            if not (call_id is None or isinstance(call_id, str | int)) or isinstance(call_id, bool):
                # answered under no id: the peer cannot match an object anyway
                raise BadInput("id: a call's id is a string or an integer")
        except (ValueError, UserError) as exc:
            self._spawn(None, self._refuse(None, exc))
            return
        if call.get("op") == "cancel":
            # the peer gave up on a call (a long poll, when a worker stops): end it here too
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
        env = await self._caller(op, call)
        handle = self.ops.get(op) if isinstance(op, str) else None
        if handle is None:
            raise UserError(f"op: unknown call {op!r}; known: {', '.join(self.ops)}")
        return await handle(self, env, call)

    async def _caller(self, op: Any, call: dict[str, Any]) -> Environment:
        """Who makes ``call``: the key checked again, or the attempt whose
        credential the frame carries."""
        env = self._attempt_env
        if env is None:
            return await self.engine.environments.authenticate(self.key)
        if op not in self._attempt_ops:
            raise PermissionDenied(f"op: an attempt credential cannot call {op!r} here")
        credential = call.get("credential")
        attempt_id = call.get("attempt_id")
        signed_for = self.engine.environments.signed_attempt(
            credential if isinstance(credential, str) else ""
        )
        if signed_for is None or signed_for != attempt_id:
            raise PermissionDenied(
                "attempt_id: an attempt credential acts for its own attempt only"
            )
        # the op's own guard refuses the attempt once it is no longer current
        return replace(env, attempt=AttemptScope(signed_for))

    async def _send(self, answer: dict[str, Any]) -> None:
        text = json.dumps(answer, separators=(",", ":"), default=str)
        async with self._send_lock:
            # the peer may be gone; its calls are then answered by no one, as over HTTP
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
    log.error("unexpected error in a socket call", exc_info=exc)
    return 500, "internal error"
