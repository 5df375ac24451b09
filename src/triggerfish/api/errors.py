"""Exceptions to HTTP answers, in one place. Bodies are ``{"error": "..."}`` (WIRE.md §2)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from triggerfish.errors import (
    AuthenticationError,
    ConflictError,
    StoreUnavailable,
    TriggerfishError,
    UserError,
)

log = logging.getLogger(__name__)


def error_response(status: int, message: str, **headers: str) -> JSONResponse:
    # Permanent refusals say so, or the official SDK retries them (WIRE.md §2).
    retry = "true" if status >= 500 or status in (408, 429) else "false"
    return JSONResponse(
        {"error": message}, status_code=status, headers={"x-should-retry": retry, **headers}
    )


def describe_validation(exc: RequestValidationError) -> tuple[int, str]:
    first: dict[str, Any] = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON body: {first.get('msg', 'invalid JSON')}"
    where = ".".join(loc) or "body"
    return 422, f"{where}: {first.get('msg', 'invalid value')}"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = describe_validation(exc)
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(TriggerfishError)
    async def _ours(_req: Request, exc: TriggerfishError) -> JSONResponse:
        if isinstance(exc, UserError | AuthenticationError | ConflictError):
            return error_response(exc.status_code, str(exc))
        if isinstance(exc, StoreUnavailable):
            return error_response(503, str(exc))
        log.exception("unexpected error")
        return error_response(500, "internal error")
