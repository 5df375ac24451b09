"""Running the server inside our own event loop (for ``server`` and ``dev``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn

from triggerfish.api.app import create_app
from triggerfish.cli._common import port_is_free
from triggerfish.engine import Engine


class EmbeddedServer(uvicorn.Server):
    """uvicorn, minus its signal handling: the command that embeds it owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(
    engine: Engine,
    host: str,
    port: int,
    *,
    log_level: str = "warning",
    dashboard_dev: bool = False,
) -> EmbeddedServer:
    """A server for ``engine``; the caller starts and closes the engine itself."""
    config = uvicorn.Config(
        create_app(engine, manage_engine=False, dashboard_dev=dashboard_dev),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",  # FastAPI startup hooks; the engine is not managed by it
        timeout_graceful_shutdown=5,
        # the worker socket (api/worker_socket.py): frames as large as a request
        # body may be, and no compression (its frames are small; CPU matters more)
        ws_max_size=engine.res.settings.max_body_bytes,
        ws_per_message_deflate=False,
    )
    return EmbeddedServer(config)


__all__ = ["EmbeddedServer", "make_server", "port_is_free"]
