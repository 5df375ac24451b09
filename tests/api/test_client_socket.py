"""The SDK's triggers over the client socket, against a real server: the same runs
and the same answers as over HTTP, HTTP whenever the socket cannot carry a
trigger, and a clear error when a sent trigger loses its connection."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from tests import support
from triggerfish import ConnectionLost, Triggerfish
from triggerfish.cli._serve import EmbeddedServer, make_server
from triggerfish.engine import Engine
from triggerfish.errors import ApiError

MANIFEST = {
    "id": "greet",
    "retry": {"max_attempts": 1, "min_delay": 0, "max_delay": 0, "factor": 1, "jitter": 0},
    "machine": "micro",
    "queue": {"name": "task/greet", "concurrency_limit": None},
    "payload_schema": {
        "type": "object",
        "properties": {"who": {"type": "string"}},
        "additionalProperties": True,
    },
}


@dataclass
class Served:
    engine: Engine
    port: int
    key: str
    server: EmbeddedServer
    serving: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def restart(self) -> None:
        """Stop the server (its connections close) and serve again on the same port."""
        await support.stop_serving(self.server, self.serving)
        self.server = make_server(self.engine, "127.0.0.1", self.port)
        self.serving = await support.serve_in_loop(self.server)

    def client(self, **kwargs: Any) -> Triggerfish:
        return Triggerfish(api_url=self.url, secret_key=kwargs.pop("key", self.key), **kwargs)

    async def run_status(self, run_id: str) -> str:
        async with httpx.AsyncClient(base_url=self.url, headers=self._auth()) as http:
            answer = await http.get(f"/api/v3/runs/{run_id}")
            assert answer.status_code == 200, answer.text
            return str(answer.json()["status"])

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
async def served(engine: Engine) -> AsyncIterator[Served]:
    """A real server (uvicorn) on a free port of 127.0.0.1 that knows the task ``greet``."""
    key, _ = await engine.environments.create_key("dev", "test")
    env = await engine.environments.by_slug("dev")
    await engine.workers.register(env.id, version="v1", name="w", concurrency=1, tasks=[MANIFEST])
    port = support.free_port()
    server = make_server(engine, "127.0.0.1", port)
    served = Served(engine, port, key, server, await support.serve_in_loop(server))
    try:
        yield served
    finally:
        await support.stop_serving(served.server, served.serving)


def _over_socket_only(client: Triggerfish) -> bool:
    """Whether the client has sent nothing over HTTP (its HTTP pool was never made)."""
    transport = client._transport
    return all(c is None for c in [*transport._sync, *transport._async])


async def test_triggers_go_over_the_socket_and_make_runs(served: Served) -> None:
    client = served.client()
    try:
        handles = [
            await asyncio.to_thread(client.tasks.trigger, "greet", {"who": f"w{i}"})
            for i in range(5)
        ]
        assert _over_socket_only(client)
        assert len({h.id for h in handles}) == 5
        for handle in handles:
            assert await served.run_status(handle.id) == "QUEUED"
        # options travel too: an idempotency key finds the same run
        first = await asyncio.to_thread(
            client.tasks.trigger, "greet", {"who": "k"}, idempotency_key="once"
        )
        again = await asyncio.to_thread(
            client.tasks.trigger, "greet", {"who": "k"}, idempotency_key="once"
        )
        assert again.id == first.id and again.is_cached and not first.is_cached
        assert _over_socket_only(client)
    finally:
        await asyncio.to_thread(client.close)


#: triggers the server refuses: (task, payload, options)
REFUSED: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "unknown task": ("greeet", {}, {}),
    "schema mismatch": ("greet", {"who": 5}, {}),
    "unknown machine": ("greet", {}, {"machine": "huge"}),
    "bad delay": ("greet", {}, {"delay": "soon"}),
    "too many tags": ("greet", {}, {"tags": [f"t{i}" for i in range(11)]}),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_refusals_are_those_of_the_http_route(served: Served, case: str) -> None:
    task, payload, options = REFUSED[case]

    def refusal(client: Triggerfish) -> tuple[int, str]:
        try:
            with pytest.raises(ApiError) as refused:
                client.tasks.trigger(task, payload, **options)
            return refused.value.status, str(refused.value)
        finally:
            client.close()

    over_socket = await asyncio.to_thread(refusal, served.client())
    over_http = await asyncio.to_thread(refusal, served.client(socket=False))
    assert over_socket == over_http
    assert over_socket[0] in (404, 422)


async def test_an_unknown_key_is_told_by_http(served: Served) -> None:
    client = served.client(key="tr_dev_not_a_key")
    try:
        with pytest.raises(ApiError) as refused:
            await asyncio.to_thread(client.tasks.trigger, "greet", {})
        assert refused.value.status == 401 and "Invalid API Key" in str(refused.value)
    finally:
        await asyncio.to_thread(client.close)


async def test_a_trigger_larger_than_the_server_takes_is_refused_for_its_size(
    served: Served,
) -> None:
    limit = served.engine.res.settings.max_body_bytes
    big = {"who": "x", "pad": "a" * limit}

    def refusal(client: Triggerfish) -> tuple[int, str]:
        with pytest.raises(ApiError) as refused:
            client.tasks.trigger("greet", big)
        return refused.value.status, str(refused.value)

    client = served.client()
    plain = served.client(socket=False)
    try:
        fits = await asyncio.to_thread(client.tasks.trigger, "greet", {"pad": "a" * (limit // 2)})
        assert _over_socket_only(client)
        refused = await asyncio.to_thread(refusal, client)
        assert refused == await asyncio.to_thread(refusal, plain)
        assert refused[0] == 413
        # the large one went as a request; the socket still carries the next
        after = await asyncio.to_thread(client.tasks.trigger, "greet", {})
        for handle in (fits, after):
            assert await served.run_status(handle.id) == "QUEUED"
    finally:
        await asyncio.to_thread(client.close)
        await asyncio.to_thread(plain.close)


async def test_a_connection_closed_between_triggers_is_opened_again(served: Served) -> None:
    client = served.client()
    try:
        before = await asyncio.to_thread(client.tasks.trigger, "greet", {})
        before_async = await client.tasks.trigger_async("greet", {})
        await served.restart()  # closes both of the client's connections
        after = await asyncio.to_thread(client.tasks.trigger, "greet", {})
        after_async = await client.tasks.trigger_async("greet", {})
        assert _over_socket_only(client)
        for handle in (before, before_async, after, after_async):
            assert await served.run_status(handle.id) == "QUEUED"
    finally:
        await asyncio.to_thread(client.close)
        await client.aclose()


async def test_threads_share_one_client(served: Served) -> None:
    client = served.client()
    ids: list[str] = []
    lock = threading.Lock()

    def trigger_many(n: int) -> None:
        for i in range(n):
            handle = client.tasks.trigger("greet", {"who": f"t{i}"})
            with lock:
                ids.append(handle.id)

    try:
        await asyncio.gather(*(asyncio.to_thread(trigger_many, 15) for _ in range(6)))
        assert len(set(ids)) == 90
        for run_id in ids:
            assert await served.run_status(run_id) == "QUEUED"
    finally:
        await asyncio.to_thread(client.close)


async def test_a_forked_child_triggers_on_its_own_connection(served: Served) -> None:
    client = served.client()
    try:
        await asyncio.to_thread(client.tasks.trigger, "greet", {"who": "parent"})
        read, write = os.pipe()

        def fork_and_trigger() -> int:
            pid = os.fork()
            if pid == 0:  # the child: trigger, report the run id, leave at once
                code = 1
                try:
                    handle = client.tasks.trigger("greet", {"who": "child"})
                    os.write(write, handle.id.encode())
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            return status

        status = await asyncio.to_thread(fork_and_trigger)
        os.close(write)
        child_run = os.read(read, 200).decode()
        os.close(read)
        assert os.waitstatus_to_exitcode(status) == 0
        assert await served.run_status(child_run) == "QUEUED"
        # the parent's connection was left alone by the child
        after = await asyncio.to_thread(client.tasks.trigger, "greet", {"who": "parent"})
        assert await served.run_status(after.id) == "QUEUED"
        assert _over_socket_only(client)
    finally:
        await asyncio.to_thread(client.close)


async def test_a_client_dropped_without_close_closes_its_socket(served: Served) -> None:
    def reading_threads() -> int:  # a socket's thread, reading while it is open
        return sum("recv_events" in t.name for t in threading.enumerate())

    client = served.client()
    await asyncio.to_thread(client.tasks.trigger, "greet", {})
    assert reading_threads() == 1
    del client
    gc.collect()

    async def closed() -> bool:
        return reading_threads() == 0

    await support.wait_for_async(closed, 10, what="the dropped client's socket to close")


async def test_async_triggers_share_one_connection(served: Served) -> None:
    client = served.client()
    try:
        handles = await asyncio.gather(
            *(client.tasks.trigger_async("greet", {"who": f"a{i}"}) for i in range(20))
        )
        assert len({h.id for h in handles}) == 20
        assert _over_socket_only(client)
        with pytest.raises(ApiError) as refused:
            await client.tasks.trigger_async("greeet", {})
        assert refused.value.status == 404 and "greeet" in str(refused.value)
    finally:
        await client.aclose()


class _NoWebSockets:
    """A proxy that does not pass WebSockets on: every handshake is refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.handshakes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            self.handshakes += 1
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


async def test_without_a_socket_triggers_are_requests(served: Served) -> None:
    app = served.server.config.app
    proxy = _NoWebSockets(app)  # type: ignore[arg-type]  # uvicorn's app: ours, an ASGI 3 app
    port = support.free_port()
    server = make_server(served.engine, "127.0.0.1", port)
    server.config.app = proxy
    serving = await support.serve_in_loop(server)
    client = Triggerfish(api_url=f"http://127.0.0.1:{port}", secret_key=served.key)
    try:
        for i in range(3):
            handle = await asyncio.to_thread(client.tasks.trigger, "greet", {"who": f"p{i}"})
            assert await served.run_status(handle.id) == "QUEUED"
        handle = await client.tasks.trigger_async("greet", {"who": "async"})
        assert await served.run_status(handle.id) == "QUEUED"
        # refused once per face of the client, then left alone for a while
        assert proxy.handshakes == 2
    finally:
        await asyncio.to_thread(client.close)
        await client.aclose()
        await support.stop_serving(server, serving)


Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def _socket_server(handle: Handler) -> AsyncIterator[str]:
    """A bare WebSocket server on a free port; yields its base URL."""
    port = support.free_port()
    async with serve(handle, "127.0.0.1", port):
        yield f"http://127.0.0.1:{port}"


async def _ignore(conn: ServerConnection) -> None:
    async for _ in conn:
        pass


async def _drop_at_first_frame(conn: ServerConnection) -> None:
    await conn.recv()
    conn.transport.abort()


@pytest.mark.parametrize("handle", [_ignore, _drop_at_first_frame], ids=["silent", "dropped"])
async def test_a_trigger_sent_and_not_answered_says_so(handle: Handler) -> None:
    async with _socket_server(handle) as url:
        client = Triggerfish(api_url=url, secret_key="tr_dev_x", timeout=0.3)
        try:
            for _ in range(2):  # and a late answer is not taken for the next call's
                with pytest.raises(ConnectionLost, match="may have taken effect"):
                    await asyncio.to_thread(client.tasks.trigger, "greet", {})
                with pytest.raises(ConnectionLost, match="may have taken effect"):
                    await client.tasks.trigger_async("greet", {})
        finally:
            await asyncio.to_thread(client.close)
            await client.aclose()


async def test_the_client_socket_answers_triggers_only(served: Served) -> None:
    url = "ws" + served.url.removeprefix("http") + "/api/v1/socket"
    headers = {"Authorization": f"Bearer {served.key}"}
    async with connect(url, additional_headers=headers) as ws:
        limit = ws.response.headers["x-triggerfish-max-frame"] if ws.response else ""
        assert limit == str(served.engine.res.settings.max_body_bytes)
        calls: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
            ({"id": 1, "op": "dequeue", "body": {}}, lambda a: "known: trigger" in a["error"]),
            ({"id": 2, "op": "trigger", "body": {"payload": {}}}, lambda a: "task:" in a["error"]),
            (
                {"id": 3, "op": "trigger", "body": {"task": "greet", "options": {"ttl": "x"}}},
                lambda a: a["status"] == 422 and "options.ttl" in a["error"],
            ),
        ]
        for call, check in calls:
            await ws.send(json.dumps(call))
            answer = json.loads(await ws.recv())
            assert answer["id"] == call["id"] and answer["status"] >= 400
            assert check(answer), answer
