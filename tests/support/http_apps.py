"""Small web apps for tests, served over real HTTP on 127.0.0.1 in a thread of their own.

Tasks in these tests make blocking HTTP calls (from the in-process worker's
thread or the test itself), so the app must not share the test's event loop.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from werkzeug.serving import make_server

from tests import support


@contextlib.contextmanager
def serving_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app (FastAPI, Starlette); yields its base URL."""
    port = support.free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        support.wait_for(lambda: server.started, timeout=10, what="the test app to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def serving_wsgi(app: Any) -> Iterator[str]:
    """Serve a WSGI app (Flask, Django); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
