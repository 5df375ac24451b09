"""What this machine allows: the round trips and the commit every system here is
built from, measured alone.

    python -m bench.floor

A trigger one by one from a client must at least cross to the server and make
its run durable (a PostgreSQL commit) before it answers; a Celery ``delay`` is
one Redis push, which is never flushed to disk. Each figure is the median of
back-to-back calls and, "at idle", of calls 20 ms apart (every process
involved has gone to sleep in between, as in W2). Nothing of Triggerfish runs
here: the HTTP and WebSocket figures are uvicorn (with the same server
libraries as ``triggerfish server``) answering an empty ASGI app, called with
httpx (the SDK's other calls, and any HTTP client's triggers) and with
websockets' sync client (the Python SDK's triggers).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlparse

import httpx

from bench._common import (
    REDIS_URL,
    clean_env,
    free_port,
    median,
    pg_database,
    pg_url,
    stop_process,
    wait_until,
)

BACK_TO_BACK = 500
AT_IDLE = 100
IDLE_PAUSE = 0.02

#: the smallest app uvicorn can serve: every request and every frame gets ``{}``
_EMPTY_APP = """
import sys, uvicorn

async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": "{}"})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            ws_per_message_deflate=False)
"""

HTTP = "HTTP round trip (httpx to uvicorn, empty answer)"
WEBSOCKET = "WebSocket round trip (websockets to uvicorn, one frame each way)"


def _timed(call: Callable[[], object], n: int, pause: float = 0.0) -> float:
    """Median milliseconds of ``n`` calls, ``pause`` seconds apart."""
    samples = []
    for _ in range(n):
        if pause:
            time.sleep(pause)
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return median(samples)


def _both(call: Callable[[], object]) -> tuple[float, float]:
    _timed(call, 50)  # warm-up
    return _timed(call, BACK_TO_BACK), _timed(call, AT_IDLE, IDLE_PAUSE)


def _postgresql() -> dict[str, tuple[float, float]]:
    import asyncpg

    loop = asyncio.new_event_loop()
    with pg_database("tf_floor") as name:
        conn = loop.run_until_complete(asyncpg.connect(pg_url(name)))
        try:
            loop.run_until_complete(conn.execute("CREATE TABLE floor_probe (n int)"))
            return {
                "PostgreSQL round trip (SELECT 1)": _both(
                    lambda: loop.run_until_complete(conn.fetchval("SELECT 1"))
                ),
                "PostgreSQL one-row insert and commit": _both(
                    lambda: loop.run_until_complete(
                        conn.execute("INSERT INTO floor_probe VALUES (1)")
                    )
                ),
            }
        finally:
            loop.run_until_complete(conn.close())
            loop.close()


def _redis() -> dict[str, tuple[float, float]]:
    where = urlparse(REDIS_URL)
    with socket.create_connection((where.hostname or "127.0.0.1", where.port or 6379)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def ping() -> None:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            if not sock.recv(64).startswith(b"+PONG"):
                raise RuntimeError("Redis did not answer PING")

        return {"Redis round trip (PING)": _both(ping)}


def _web() -> dict[str, tuple[float, float]]:
    from websockets.sync.client import connect

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _EMPTY_APP, str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # stop_process ends the process group
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        with httpx.Client(timeout=5) as client:

            def ready() -> bool:
                try:
                    return client.get(url).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(ready, 30, "uvicorn to answer", interval=0.05)
            call = lambda: client.post(url, json={"payload": {}})  # noqa: E731
            floors = {HTTP: _both(call)}
        with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:

            def frame() -> None:
                ws.send('{"id":1,"op":"trigger","body":{"payload":{}}}')
                ws.recv(timeout=5)

            floors[WEBSOCKET] = _both(frame)
        return floors
    finally:
        stop_process(server)


def machine_floors() -> dict[str, tuple[float, float]]:
    """Median ms of each floor: (back to back, at idle)."""
    return {**_postgresql(), **_redis(), **_web()}


def floor_lines(floors: dict[str, tuple[float, float]]) -> list[str]:
    """The floors as a Markdown table, with the bound they put on a sequential trigger."""
    lines = ["| round trip | back to back | at idle (20 ms apart) |", "|---|---|---|"]
    for name, (busy, idle) in floors.items():
        lines.append(f"| {name} | {busy:.3f} ms | {idle:.3f} ms |")
    commit = floors["PostgreSQL one-row insert and commit"][0]
    lines.append("")
    for transport, name in (("a WebSocket frame (the Python SDK)", WEBSOCKET), ("HTTP", HTTP)):
        if name in floors:
            least = floors[name][0] + commit
            lines.append(
                f"A durable trigger sent one at a time over {transport} costs at least its "
                f"round trip and a commit: {least:.2f} ms, so at most {1000 / least:,.0f} "
                "runs/s from one sequential client on this machine, before any work of the "
                "server, the worker or the task."
            )
    return lines
    return lines


def main() -> None:
    for line in floor_lines(machine_floors()):
        print(line)


if __name__ == "__main__":
    main()
