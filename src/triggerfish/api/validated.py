"""Input checked at the door: the shared validated types and the strict JSON reader.

Anything the API accepts is stored and must be readable again, by every store
and every client. So text never carries a NUL character (PostgreSQL refuses it)
nor a lone UTF-16 surrogate (no encoder can write it back out), numbers are
finite and within a documented range, and a JSON body is at most
:data:`MAX_JSON_DEPTH` levels deep. A refusal is a 422 naming the field.

Two layers do it:

- :func:`loads` reads every JSON body (through :class:`StrictJsonRoute`, which
  every router uses, and on both WebSockets): it refuses ``NaN``,
  ``Infinity``, numbers that overflow to infinity (``1e999``), integers beyond
  64 bits, NUL and lone surrogates anywhere (payload and metadata included),
  and deep nesting. The same route class refuses NUL in the path and the
  query string.
- The ``Annotated`` types below bound each field's length or range. Every
  route's models use them, and new routes should too::

      class Body(BaseModel):
          name: Name                  # 1-128 characters, clean text
          key: Key | None = None      # 1-512 characters
          after: NonNegativeInt64 = 0
          timeout: Duration | None = None   # "1h30m" or seconds, 0 to 100 years

Documented ranges: :data:`MAX_SECONDS` (durations: delay, TTL, timeouts,
periods, all in seconds, never negative), :data:`MAX_PRIORITY`, the 64-bit
integers of :data:`INT64_MIN` .. :data:`INT64_MAX`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from triggerfish._validated import (
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_DEPTH,
    MAX_PRIORITY,
    MAX_SECONDS,
    BadInput,
    Duration,
    Epoch,
    EventName,
    Id,
    Index32,
    Int64,
    Key,
    Name,
    NonNegativeInt64,
    PositiveInt64,
    Priority,
    Seconds,
    Text,
    check_json,
    loads,
    text_problem,
    url_problem,
)

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_JSON_DEPTH",
    "MAX_PRIORITY",
    "MAX_SECONDS",
    "BadInput",
    "Duration",
    "Epoch",
    "EventName",
    "Id",
    "Index32",
    "Int64",
    "Key",
    "Name",
    "NonNegativeInt64",
    "PositiveInt64",
    "Priority",
    "Seconds",
    "StrictJsonRoute",
    "StrictRequest",
    "Text",
    "check_json",
    "loads",
    "text_problem",
    "url_problem",
]


# ---------------------------------------------------------------------------
# routes


class StrictRequest(Request):
    """A request whose ``json()`` is :func:`loads`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads(await self.body())
            except BadInput as exc:
                raise HTTPException(422, str(exc)) from None
        return self._json


class StrictJsonRoute(APIRoute):
    """The route class of every router: strict JSON bodies, no NUL in path or query.

    Example::

        router = APIRouter(route_class=StrictJsonRoute)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            refused = url_problem(request.scope["path"], request.scope["query_string"])
            if refused is not None:
                raise HTTPException(422, refused)
            return await handler(StrictRequest(request.scope, request.receive))

        return strict
