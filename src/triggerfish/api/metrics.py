"""``GET /metrics`` (Prometheus text format) and the HTTP metrics of every request."""

from __future__ import annotations

import re
import time

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triggerfish.api.deps import engine_of
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine.metrics import Metrics

router = APIRouter(tags=["metrics"], route_class=StrictJsonRoute)

_TRIGGER = re.compile(r"/api/v1/tasks/.+/trigger")


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every metric of ``engine/metrics.py``, fresh from the store."""
    body = await engine_of(request).metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class HttpMetrics:
    """ASGI middleware: requests by route template (never the raw path: bounded
    labels), method and status, and their time."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.request_done(
                _route(scope), scope["method"], status, time.perf_counter() - t0
            )


def _route(scope: Scope) -> str:
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str):
        return route
    if _TRIGGER.fullmatch(scope["path"]):  # answered by the trigger lane
        return "/api/v1/tasks/{task_id}/trigger"
    return "unmatched"
