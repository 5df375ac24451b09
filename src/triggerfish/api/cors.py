"""CORS for the bearer-token API, so a browser page on another origin can use a
public access token (``runs.subscribeToRun``, the React hooks, ``streams.read``,
a trigger token).

Which routes: every path under ``/api/`` and ``/realtime/``. Their callers
authenticate with a header (a secret key, an attempt credential or a public
JWT), never a cookie, so answering another origin lends it nothing it does not
already hold; a secret-key route answers the same way (a secret key never
belongs in a browser, CORS or not). The dashboard (cookies) and the worker
routes get no CORS headers at all, so a browser refuses cross-origin reads.

Which origins: ``ServerSettings.cors_origins`` (``TRIGGERFISH_CORS_ORIGINS``),
comma-separated; ``*`` (the default) any, empty none. A preflight from an origin
not allowed gets 403 naming it. Allowed preflights may ask for any request
header (``Authorization``, ``x-trigger-jwt``, ``Last-Event-ID``, ``trigger-version``
…: the SDK's set grows with its versions); ``Access-Control-Allow-Credentials``
is never sent. Responses expose the headers the SDK reads (:data:`EXPOSED`).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triggerfish.api.errors import error_response

#: path prefixes that answer other origins
PREFIXES = ("/api/", "/realtime/")
METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
#: response headers a browser lets the SDK read
EXPOSED = ", ".join(
    (
        "electric-offset",
        "electric-handle",
        "electric-schema",
        "electric-cursor",
        "electric-up-to-date",
        "x-trigger-jwt",
        "x-trigger-jwt-claims",
        "x-stream-version",
        "x-last-chunk-index",
        "x-should-retry",
        "retry-after",
        "x-request-id",
    )
)
#: seconds a browser may cache a preflight's answer
MAX_AGE = "600"


def parse_origins(value: str) -> frozenset[str] | None:
    """The allowed origins of a setting; None means any."""
    origins = {o.strip().rstrip("/") for o in value.split(",") if o.strip()}
    return None if "*" in origins else frozenset(origins)


class Cors:
    """The CORS policy above, as a plain ASGI middleware (see ``app.BodyLimit`` for why)."""

    def __init__(self, app: ASGIApp, origins: str) -> None:
        self.app = app
        self.allowed = parse_origins(origins)

    def _allow_origin(self, origin: str) -> str | None:
        if self.allowed is None:
            return "*"
        return origin if origin in self.allowed else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(PREFIXES):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allow = self._allow_origin(origin)
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in headers
        if preflight:
            if allow is None:
                response = error_response(
                    403, f"Origin: {origin} may not call this server (TRIGGERFISH_CORS_ORIGINS)"
                )
                await response(scope, receive, send)
                return
            answer = [
                (b"access-control-allow-origin", allow.encode()),
                (b"access-control-allow-methods", METHODS.encode()),
                (b"access-control-max-age", MAX_AGE.encode()),
                (b"vary", b"Origin, Access-Control-Request-Headers"),
            ]
            asked = headers.get("access-control-request-headers")
            if asked:
                answer.append((b"access-control-allow-headers", asked.encode("latin-1")))
            await send({"type": "http.response.start", "status": 204, "headers": answer})
            await send({"type": "http.response.body", "body": b""})
            return
        if allow is None:  # no CORS headers: the browser keeps the answer from the page
            await self.app(scope, receive, send)
            return
        extra = [
            (b"access-control-allow-origin", allow.encode()),
            (b"access-control-expose-headers", EXPOSED.encode()),
        ]
        if allow != "*":
            extra.append((b"vary", b"Origin"))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)
