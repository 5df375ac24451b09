"""The worker API over one WebSocket: the hot worker calls without a request each.

A busy worker talks to the server for every run (a report that claims the next
one) and a durable task for every step. Over HTTP each of those is a request
through the whole web stack on both sides; here they are frames on one
connection that stays open (the frame format is in ``api/_sockets.py``). The
calls and their answers are the same as on the HTTP routes of ``worker_api``
(the same bodies, validated by the same models, handled by the same
functions), so the two stay interchangeable: a worker that cannot open the
socket falls back to HTTP. Calls::

    {"id": 7, "op": "reports", "body": {...}}                # worker-level calls
    {"id": 8, "op": "journal", "attempt_id": "...", "body": {...}}   # durable calls

A worker that stops gives up its long-polling ``dequeue`` with ``cancel``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, WebSocket
from pydantic import BaseModel

from triggerfish.api import worker_api as http
from triggerfish.api._sockets import Op, SocketConnection, serve_socket
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.errors import UserError

router = APIRouter(prefix="/worker/v1", route_class=StrictJsonRoute)


def _worker_call(
    model: type[BaseModel], fn: Callable[[Any, Engine, Environment], Awaitable[Any]]
) -> Op:
    async def op(conn: SocketConnection, env: Environment, call: dict[str, Any]) -> Any:
        return await fn(model.model_validate(call.get("body")), conn.engine, env)

    return op


def _attempt_call(
    model: type[BaseModel], fn: Callable[[str, Any, Engine, Environment], Awaitable[Any]]
) -> Op:
    async def op(conn: SocketConnection, env: Environment, call: dict[str, Any]) -> Any:
        body = model.model_validate(call.get("body"))
        attempt = str(call.get("attempt_id") or "")
        if not attempt:
            raise UserError("attempt_id: required for a durable call")
        return await fn(attempt, body, conn.engine, env)

    return op


async def _dequeue(conn: SocketConnection, env: Environment, call: dict[str, Any]) -> Any:
    """A long poll, like ``POST /dequeue``; it gives up when the socket closes."""
    body = http.DequeueBody.model_validate(call.get("body"))
    engine = conn.engine
    worker = await engine.workers.identity(env.id, body.worker_id)
    wait = min(body.wait, engine.res.settings.dequeue_wait)

    async def gone() -> bool:
        return conn.closed.is_set()

    rows = await engine.dequeue.claim_or_wait(worker, body.max, wait, gone=gone, start=body.start)
    return {"runs": await http.jobs(engine, env, rows)}


#: op -> handler; besides ``dequeue``, the HTTP routes' own functions on their own bodies
_OPS: dict[str, Op] = {
    "dequeue": _dequeue,
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


@router.websocket("/socket")
async def socket(websocket: WebSocket) -> None:
    # a task process's own socket (worker/_direct.py) carries its journal writes only
    await serve_socket(websocket, _OPS, attempt_ops=frozenset({"journal"}))
