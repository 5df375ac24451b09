"""Exceptions to HTTP answers, in one place. Bodies are ``{"error": "..."}`` (WIRE.md §2)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from triggerfish.errors import (
    AuthenticationError,
    ConflictError,
    PermissionDenied,
    ServerBusy,
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


def describe_validation(errors: Sequence[Any]) -> tuple[int, str]:
    """Status and message for a validation failure: the first error, naming its field."""
    first: dict[str, Any] = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return 400, f"malformed JSON body: {first.get('msg', 'invalid JSON')}"
    where = ".".join(loc) or "body"
    return 422, f"{where}: {first.get('msg', 'invalid value')}"


def describe_error(exc: TriggerfishError) -> tuple[int, str]:
    """Status and message for one of our errors; an unexpected one is logged, not shown."""
    if isinstance(exc, UserError | AuthenticationError | PermissionDenied | ConflictError):
        return exc.status_code, str(exc)
    if isinstance(exc, StoreUnavailable):
        return 503, str(exc)
    log.error("unexpected error", exc_info=exc)
    return 500, "internal error"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = describe_validation(exc.errors())
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(TriggerfishError)
    async def _ours(_req: Request, exc: TriggerfishError) -> JSONResponse:
        if isinstance(exc, ServerBusy):
            return error_response(503, str(exc), **{"Retry-After": str(exc.retry_after)})
        return error_response(*describe_error(exc))
