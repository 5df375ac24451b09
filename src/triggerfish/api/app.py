"""The server application: public API, worker API, dashboard, OpenAPI document."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request, Response

from triggerfish import __version__
from triggerfish.api import errors, public, schedules, waitpoints, worker_api
from triggerfish.api.errors import error_response
from triggerfish.dashboard import routes as dashboard
from triggerfish.engine import Engine


def create_app(engine: Engine, *, manage_engine: bool = True) -> FastAPI:
    """The ASGI app. With ``manage_engine`` it starts and closes the engine itself.

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
    )
    app.state.engine = engine
    errors.install(app)
    limit = engine.res.settings.max_body_bytes

    @app.middleware("http")
    async def _limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return error_response(
                413, f"request body is {length} bytes; the limit is {limit} bytes"
            )
        return await call_next(request)

    app.include_router(public.router)
    app.include_router(schedules.router)
    app.include_router(waitpoints.router)
    app.include_router(worker_api.router)
    app.include_router(dashboard.router)
    return app
