"""The trigger route's own lane: ``POST /api/v1/tasks/{task_id}/trigger`` answered
without the framework's routing and per-request machinery when it can be.

Triggering is the hottest public call, and on it FastAPI's route matching,
dependency solving and exception plumbing cost about as much server time as
the engine's own work. This ASGI layer answers a well-formed, authenticated
JSON trigger itself, with the route's own body model, request builder and
engine call. Anything else (another path, no Content-Length, a body that is
not JSON or fails validation, a bad key) goes on to the app untouched, with the
body already read handed on, so every refusal is the route's own answer. The
route stays declared in the app, for the OpenAPI document and as that
fallback.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triggerfish.api.errors import describe_error, error_response
from triggerfish.api.trigger_wire import (
    REQUEST_KEY_HEADER,
    TriggerBody,
    request_key,
    trigger_answer,
    trigger_request,
)
from triggerfish.api.validated import loads
from triggerfish.engine import Engine
from triggerfish.errors import (
    ENVIRONMENT_HEADER,
    AuthenticationError,
    StoreUnavailable,
    TriggerfishError,
    UserError,
)

_ENVIRONMENT = ENVIRONMENT_HEADER.encode()
_PATH = re.compile(r"/api/v1/tasks/(.+)/trigger")
_REQUEST_KEY = REQUEST_KEY_HEADER.encode()


class TriggerLane:
    """ASGI middleware: the trigger route's fast path (see the module docstring)."""

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _match(scope)
        if match is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if not length.isdigit() or not headers.get(b"content-type", b"").startswith(
            b"application/json"
        ):
            await self.app(scope, receive, send)
            return
        body = await _read(receive, int(length))
        if body is None:  # the client went away
            return
        answer = await self._trigger(
            match,
            headers.get(b"authorization", b""),
            body,
            b"trigger-version" in headers,
            headers.get(b"traceparent"),
            headers.get(_ENVIRONMENT),
            headers.get(_REQUEST_KEY),
        )
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        await answer(scope, receive, send)

    async def _trigger(
        self,
        task_id: str,
        authorization: bytes,
        body: bytes,
        official_sdk: bool,
        traceparent: bytes | None = None,
        asked: bytes | None = None,
        request_key_header: bytes | None = None,
    ) -> Any:
        """The answer, or None to leave the request to the app (it will refuse it)."""
        scheme, _, key = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        try:
            env = await self.engine.environments.authenticate(key.strip())
            if asked is not None and asked.decode("latin-1") != env.slug:
                return None  # the app's dependency refuses it, naming both environments
            parsed = TriggerBody.model_validate(loads(body))
            context = traceparent.decode("latin-1") if traceparent else None
            request = trigger_request(
                task_id,
                parsed,
                self.engine.res.clock.now(),
                context,
                request_key(request_key_header),
            )
        except StoreUnavailable as exc:
            return error_response(*describe_error(exc))
        except (AuthenticationError, ValidationError, ValueError, UserError):
            return None
        try:
            result = await self.engine.enqueue.trigger(env.id, request)
        except TriggerfishError as exc:
            return error_response(*describe_error(exc))
        headers = None
        if official_sdk:  # x-trigger-jwt: a token reading the new run (WIRE.md §10)
            token = self.engine.public_tokens.sign(
                env, key.strip(), [f"read:runs:{result.id}"], 3600
            )
            headers = {"x-trigger-jwt": token}
        return JSONResponse(trigger_answer(result), headers=headers)


def _match(scope: Scope) -> str | None:
    if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
        return None
    match = _PATH.fullmatch(scope["path"])
    return match.group(1) if match else None


async def _read(receive: Receive, length: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False) or size > length:
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body already read, then the client's own messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
