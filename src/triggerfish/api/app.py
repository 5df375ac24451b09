"""The server application: public API, worker API, dashboard, OpenAPI document."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from triggerfish._version import __version__
from triggerfish.api import (
    alerts,
    auth,
    batches,
    client_socket,
    envvars,
    errors,
    metrics,
    public,
    queues,
    realtime,
    run_management,
    schedules,
    sdk_streams,
    shapes,
    traces,
    waitpoints,
    webhooks,
    worker_api,
    worker_socket,
)
from triggerfish.api.cors import Cors
from triggerfish.api.errors import error_response
from triggerfish.api.metrics import HttpMetrics
from triggerfish.api.trigger_lane import TriggerLane
from triggerfish.dashboard import routes as dashboard
from triggerfish.engine import Engine


def create_app(
    engine: Engine, *, manage_engine: bool = True, dashboard_dev: bool = False
) -> FastAPI:
    """The ASGI app. With ``manage_engine`` it starts and closes the engine itself;
    ``dashboard_dev`` (``triggerfish dev`` only) signs the dashboard in without a password.

    Example::

        engine = Engine.create(ServerSettings())
        uvicorn.run(create_app(engine), port=3030)
    """

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_engine:
            await engine.start()
        try:
            yield
        finally:
            if manage_engine:
                await engine.close()

    app = FastAPI(
        title="Triggerfish",
        version=__version__,
        summary="Durable background jobs and workflows for Python",
        lifespan=lifespan,
        # /docs is served by the dashboard with swagger-ui from the package (no CDN)
        docs_url=None,
        redoc_url=None,
        **_telemetry_options(),
    )
    app.state.engine = engine
    if engine.alerts.send is None:
        engine.alerts.send = alerts.Channels().send
    errors.install(app)
    limit = engine.res.settings.max_body_bytes

    # the trigger route's fast path, behind the body limit (added first: inner)
    app.add_middleware(TriggerLane, engine=engine)
    app.add_middleware(BodyLimit, limit=limit)
    # browsers on other origins (public tokens); the dashboard and /worker/ never
    app.add_middleware(Cors, origins=engine.res.settings.cors_origins)
    app.add_middleware(HttpMetrics, metrics=engine.metrics)  # outermost: sees every answer

    app.include_router(public.router)
    app.include_router(client_socket.router)
    app.include_router(schedules.router)
    app.include_router(waitpoints.router)
    app.include_router(queues.router)
    app.include_router(envvars.router)
    app.include_router(run_management.router)
    app.include_router(batches.router)
    app.include_router(webhooks.router)
    app.include_router(realtime.router)
    realtime.redact_access_logs()
    app.include_router(shapes.router)
    app.include_router(sdk_streams.router)
    app.include_router(auth.router)
    app.include_router(traces.router)
    app.include_router(metrics.router)
    app.include_router(alerts.router)
    app.include_router(worker_api.router)
    app.include_router(worker_socket.router)
    dashboard.install(app, dev_sign_in=dashboard_dev)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, bool]:
        """The server process answers (for a load balancer's liveness check)."""
        return {"ok": True}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "store unreachable"}})
    async def readyz() -> dict[str, bool]:
        """The server can reach its store (for a load balancer's readiness check); 503 if not."""
        await engine.ping_store()
        return {"ok": True}

    return app


class BodyLimit:
    """Refuse a request whose Content-Length is above ``limit`` with 413, unread.

    A plain ASGI middleware rather than ``@app.middleware("http")``: that one
    runs every request in an extra task behind memory streams, a cost paid by
    every trigger and every worker call.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    if value.isdigit() and int(value) > self.limit:
                        length = value.decode()
                        response = error_response(
                            413, f"request body is {length} bytes; the limit is {self.limit} bytes"
                        )
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def _telemetry_options() -> dict[str, Any]:
    """FastAPI's own request spans (versions that have them), without the worker's
    routes: claims, reports and heartbeats would each be a trace of their own and
    cost the hot path; a run's trace gets its spans from ``engine/traces.py``."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"operation_spans": False, "exclude": _worker_route}}


def _worker_route(scope: Any) -> bool:
    return str(scope.get("path", "")).startswith("/worker/")
