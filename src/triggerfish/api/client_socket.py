"""Triggers over one WebSocket: the SDK's hot call without a request each.

An application that triggers many runs pays, per trigger over HTTP, for a
request through the whole web stack on both sides (in the client about three
times the CPU of the frames below). The Python SDK therefore sends its
triggers as frames on one connection that stays open (``sdk/_socket.py``),
and falls back to the HTTP route when the socket cannot be had. The frame
format is in ``api/_sockets.py``; the one call::

    {"id": 1, "op": "trigger", "body": {"task": "send-email", "payload": {...}, "options": {...}}}

takes the body of ``POST /api/v1/tasks/{task}/trigger`` plus the task's
identifier (and, as ``traceparent`` and ``requestKey``, what the route reads
from its headers), and answers what that route answers (``{"id": "run_…"}``; refusals
with the route's status and message).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, WebSocket

from triggerfish.api._sockets import Op, SocketConnection, serve_socket
from triggerfish.api.trigger_wire import (
    TriggerBody,
    request_key,
    trigger_answer,
    trigger_request,
)
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine.environments import Environment
from triggerfish.errors import UserError

router = APIRouter(prefix="/api/v1", route_class=StrictJsonRoute)


async def _trigger(conn: SocketConnection, env: Environment, call: dict[str, Any]) -> Any:
    body = call.get("body")
    task_id = body.get("task") if isinstance(body, dict) else None
    if not isinstance(task_id, str) or not task_id:
        raise UserError("task: the identifier of the task to trigger (a non-empty string)")
    engine = conn.engine
    traceparent = body.get("traceparent") if isinstance(body, dict) else None
    key = body.get("requestKey") if isinstance(body, dict) else None
    if key is not None and not isinstance(key, str):
        raise UserError("requestKey: a string, the same on every retry of one call")
    request = trigger_request(
        task_id,
        TriggerBody.model_validate(body),
        engine.res.clock.now(),
        traceparent if isinstance(traceparent, str) else None,
        request_key(key),
    )
    return trigger_answer(await engine.enqueue.trigger(env.id, request))


_OPS: dict[str, Op] = {"trigger": _trigger}


@router.websocket("/socket")
async def socket(websocket: WebSocket) -> None:
    await serve_socket(websocket, _OPS)
