"""Several servers in one URL setting (issue 17, defect 9): the SDK moves to the next
server when one refuses or hangs, a retried call carries the same request key on
each try, and the servers make one run of a trigger retried with that key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests import support
from tests.api.conftest import MANIFEST, Served
from triggerfish import ConnectionLost, ServerUnreachable, Triggerfish
from triggerfish._domain.attempts import Succeeded
from triggerfish.cli._serve import make_server
from triggerfish.engine import Engine
from triggerfish.sdk import _sse
from triggerfish.worker.api_client import ClaimRequest, CompletionReport, WorkerApi

HEADER = "x-trigger-request-idempotency-key"


def _closed_port_url() -> str:
    """A URL nothing listens on: connections to it are refused."""
    return f"http://127.0.0.1:{support.free_port()}"


@contextlib.contextmanager
def _hung_server() -> Iterator[str]:
    """A server that accepts connections and never answers (a hung process); its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


class _Recorder:
    """A tiny HTTP server that records each request's headers; ``drop`` closes the
    connection after reading a request (the answer is lost), else it answers 200."""

    def __init__(self, drop: bool) -> None:
        self.seen: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                recorder.seen.append({k.lower(): v for k, v in self.headers.items()})
                if drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = json.dumps({"id": f"run_{len(recorder.seen)}"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[tuple[_Recorder, _Recorder]]:
    lost, answers = _Recorder(drop=True), _Recorder(drop=False)
    try:
        yield lost, answers
    finally:
        lost.close()
        answers.close()


def test_a_retried_trigger_carries_one_request_key_and_each_call_its_own(
    recorders: tuple[_Recorder, _Recorder],
) -> None:
    lost, answers = recorders
    client = Triggerfish(api_url=f"{lost.url},{answers.url}", secret_key="tr_dev_x", socket=False)
    try:
        first = client.tasks.trigger("job", {"n": 1}, idempotency_key="mine")
        second = client.tasks.trigger("job", {"n": 2})
        lost_again = Triggerfish(
            api_url=f"{lost.url},{answers.url}", secret_key="tr_dev_x", socket=False
        )
        try:
            third = lost_again.tasks.trigger("job", {"n": 3})
        finally:
            lost_again.close()
    finally:
        client.close()
    assert (first.id, second.id, third.id) == ("run_1", "run_2", "run_3")
    # the first server read calls 1 and 3 and lost their answers; the second answered
    # the retries with the same key, and call 2 (the client stayed on it) with its own
    sent_first, sent_third = (h[HEADER] for h in lost.seen)
    retry_first, own_second, retry_third = (h[HEADER] for h in answers.seen)
    assert sent_first == retry_first and sent_third == retry_third
    assert len({retry_first, own_second, retry_third}) == 3
    # never the caller's idempotency key (which travels, hashed, in the body)
    assert "mine" not in retry_first and retry_first.startswith("req_")  # made by the SDK


def test_a_call_that_is_not_safe_to_repeat_is_not_sent_twice(
    recorders: tuple[_Recorder, _Recorder],
) -> None:
    lost, answers = recorders
    client = Triggerfish(api_url=f"{lost.url},{answers.url}", secret_key="tr_dev_x", socket=False)
    try:
        with pytest.raises(ConnectionLost):
            client.runs.replay("run_1")
    finally:
        client.close()
    assert len(lost.seen) == 1 and answers.seen == []


def test_when_every_server_fails_the_error_names_them_all() -> None:
    urls = [_closed_port_url(), _closed_port_url()]
    client = Triggerfish(api_url=",".join(urls), secret_key="tr_dev_x")
    try:
        with pytest.raises(ServerUnreachable) as raised:
            client.runs.list()
    finally:
        client.close()
    assert [url for url, _ in raised.value.tried] == urls
    assert all(url in str(raised.value) for url in urls)


async def test_a_refused_first_server_is_skipped(served: Served) -> None:
    client = Triggerfish(api_url=f"{_closed_port_url()},{served.url}", secret_key=served.key)
    try:
        handle = await asyncio.to_thread(client.tasks.trigger, "job", {"n": 1})
        assert await served.status(handle.id) == "QUEUED"
        run = await asyncio.to_thread(client.runs.retrieve, handle.id)
        assert run.id == handle.id
        assert client._transport.servers.current == served.url
    finally:
        client.close()


async def test_a_refused_first_server_is_skipped_async(served: Served) -> None:
    client = Triggerfish(api_url=f"{_closed_port_url()},{served.url}", secret_key=served.key)
    try:
        handle = await client.tasks.trigger_async("job", {"n": 1})
        assert await served.status(handle.id) == "QUEUED"
    finally:
        await client.aclose()


async def test_a_hung_first_server_is_left_after_the_read_timeout(served: Served) -> None:
    with _hung_server() as hung:
        client = Triggerfish(api_url=f"{hung},{served.url}", secret_key=served.key, timeout=1)
        try:
            began = time.monotonic()
            handle = await asyncio.to_thread(client.tasks.trigger, "job", {"n": 1})
            took = time.monotonic() - began
            runs = (await served.http.get("/api/v1/runs")).json()["data"]
        finally:
            client.close()
    assert await served.status(handle.id) == "QUEUED"
    assert [r["id"] for r in runs] == [handle.id]
    # the socket's opening and the request each wait one second on the hung server:
    # the bound is far above that, and far below the 30-second default
    assert took < 15, took


async def test_a_hung_first_server_is_left_after_hung_after_not_the_whole_timeout(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several servers, a trigger (over the socket and over HTTP, sync and
    async) and a read give a server that accepts but does not answer
    ``HUNG_AFTER`` seconds (5; 1 here), not the client's whole ``timeout`` (30
    s by default), before the next one answers them."""
    monkeypatch.setattr("triggerfish.sdk._transport.HUNG_AFTER", 1.0)
    with _hung_server() as hung:
        api_url = f"{hung},{served.url}"
        key = served.key
        clients = [
            Triggerfish(api_url=api_url, secret_key=key, connect_timeout=1),
            Triggerfish(api_url=api_url, secret_key=key, connect_timeout=1, socket=False),
        ]
        took: list[float] = []
        handles = []

        async def timed(call: Awaitable[Any]) -> Any:
            began = time.monotonic()
            try:
                return await call
            finally:
                took.append(time.monotonic() - began)

        try:
            for client in clients:
                handles.append(await timed(asyncio.to_thread(client.tasks.trigger, "job", {})))
                client._transport.servers.index = 0  # back to the hung one
                handles.append(await timed(client.tasks.trigger_async("job", {})))
                client._transport.servers.index = 0
                run = await timed(asyncio.to_thread(client.runs.retrieve, handles[-1].id))
                assert run.id == handles[-1].id
            runs = (await served.http.get("/api/v1/runs")).json()["data"]
        finally:
            for client in clients:
                await asyncio.to_thread(client.close)
                await client.aclose()
    assert sorted(r["id"] for r in runs) == sorted(h.id for h in handles)  # one run each
    # a second on the hung server per call (and one for the socket's opening),
    # far from the 30-second timeout
    assert max(took) < 10, took


async def _subscribed_until_canceled(
    api_url: str, served: Served, timeout: float = 30
) -> tuple[list[str], str]:
    """Subscribe to a new run (async, then sync in a thread) through a client given
    ``api_url`` and cancel it once the snapshot came: the kinds of events the
    subscriptions saw, and the server the client was on at the end."""
    client = Triggerfish(api_url=api_url, secret_key=served.key, timeout=timeout)
    seen: list[str] = []

    def subscribe_sync(run_id: str) -> None:
        seen.extend(event.kind for event in client.runs.subscribe(run_id))

    async def subscribe_async(run_id: str) -> None:
        async for event in client.runs.subscribe_async(run_id):
            seen.append(event.kind)

    try:
        await _until_canceled(served, subscribe_async, seen)
        await _until_canceled(
            served, lambda run_id: asyncio.to_thread(subscribe_sync, run_id), seen
        )
    finally:
        client.close()
        await client.aclose()
    return seen, client._transport.servers.current


async def _until_canceled(
    served: Served, subscribe: Callable[[str], Awaitable[None]], seen: list[str]
) -> None:
    [run_id] = await served.trigger(1)
    snapshots = seen.count("snapshot")
    reading = asyncio.ensure_future(subscribe(run_id))
    await support.wait_for_async(
        lambda: reading.done() or seen.count("snapshot") > snapshots, 30, what="a snapshot"
    )
    assert (await served.http.post(f"/api/v2/runs/{run_id}/cancel")).status_code == 200
    await asyncio.wait_for(reading, 30)


async def test_a_subscription_skips_a_refused_first_server(served: Served) -> None:
    seen, current = await _subscribed_until_canceled(f"{_closed_port_url()},{served.url}", served)
    assert seen.count("snapshot") == 2 and current == served.url


async def test_a_subscription_leaves_a_hung_first_server_after_its_silence_limit(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sse, "STREAM_SILENCE", 1.0)
    with _hung_server() as hung:
        seen, current = await _subscribed_until_canceled(f"{hung},{served.url}", served, timeout=1)
    assert seen.count("snapshot") == 2 and current == served.url


async def _trigger(served: Served, key: str | None, body: dict[str, Any]) -> httpx.Response:
    headers = {HEADER: key} if key else {}
    return await served.http.post("/api/v1/tasks/job/trigger", json=body, headers=headers)


async def _run_count(served: Served) -> int:
    return len((await served.http.get("/api/v1/runs")).json()["data"])


async def test_a_retried_trigger_with_its_request_key_makes_one_run(served: Served) -> None:
    first = await _trigger(served, "k-1", {"payload": {"n": 1}})
    again = await _trigger(served, "k-1", {"payload": {"n": 1}})
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json() == {"id": first.json()["id"]}
    # a retry that reaches the route (not the trigger lane): the same
    routed = await served.http.post(
        "/api/v1/tasks/job/trigger",
        content=json.dumps({"payload": {"n": 1}}),
        headers={HEADER: "k-1", "content-type": "application/json; charset=utf-8"},
    )
    assert routed.json() == first.json(), routed.text
    other = await _trigger(served, "k-2", {"payload": {"n": 1}})
    assert other.json()["id"] != first.json()["id"]
    assert await _run_count(served) == 2
    # with an idempotency key too, the retry answers as the first try did
    keyed = {"payload": {}, "options": {"idempotencyKey": "a" * 64}}
    made = await _trigger(served, "k-3", keyed)
    assert (await _trigger(served, "k-3", keyed)).json() == made.json() == {"id": made.json()["id"]}
    assert (await _trigger(served, "k-4", keyed)).json()["isCached"] is True


async def test_concurrent_tries_of_one_trigger_make_one_run(served: Served) -> None:
    answers = await asyncio.gather(*[_trigger(served, "k-race", {"payload": {}}) for _ in range(6)])
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await _run_count(served) == 1


async def test_a_retried_batch_trigger_makes_one_batch(served: Served) -> None:
    body = {"items": [{"task": "job", "payload": {"i": i}} for i in range(3)]}
    headers = {HEADER: "b-1"}
    first = await served.http.post("/api/v2/tasks/batch", json=body, headers=headers)
    again = await served.http.post("/api/v2/tasks/batch", json=body, headers=headers)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["runs"] == first.json()["runs"]
    assert await _run_count(served) == 3
    created = [
        await served.http.post("/api/v3/batches", json={"runCount": 2}, headers={HEADER: "b-2"})
        for _ in range(2)
    ]
    assert created[0].json()["id"] == created[1].json()["id"]


async def test_a_retried_trigger_over_the_client_socket_makes_one_run(served: Served) -> None:
    from websockets.asyncio.client import connect

    url = "ws" + served.url.removeprefix("http") + "/api/v1/socket"
    headers = {"Authorization": f"Bearer {served.key}"}
    frame = {"op": "trigger", "body": {"task": "job", "payload": {}, "requestKey": "s-1"}}
    async with connect(url, additional_headers=headers) as ws:
        ids = []
        for call_id in (1, 2):
            await ws.send(json.dumps({"id": call_id, **frame}))
            reply = json.loads(await ws.recv())
            assert reply["status"] == 200, reply
            ids.append(reply["body"]["id"])
    assert ids[0] == ids[1]
    assert await _run_count(served) == 1


async def test_a_malformed_request_key_is_refused_naming_the_header(served: Served) -> None:
    answer = await _trigger(served, "x" * 200, {"payload": {}})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(HEADER)


async def test_the_sdk_makes_one_run_of_a_trigger_whose_answer_was_lost(
    served: Served,
) -> None:
    """The whole path: the first server records the run but its answer never comes
    back; the client's retry on the second server (same database) gets that run."""
    port = int(served.url.rsplit(":", 1)[1])

    async def lose_the_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", port)
        request = b""
        while b"\r\n\r\n" not in request:
            request += await reader.read(65536)
        head, _, body = request.partition(b"\r\n\r\n")
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(
                b":"
            )[1]
        )
        while len(body) < length:
            body += await reader.read(65536)
        upstream_w.write(head + b"\r\n\r\n" + body)
        await upstream_w.drain()
        await upstream_r.readuntil(b"\r\n\r\n")  # the server answered: it made the run
        upstream_w.close()
        writer.close()  # ...and the client never hears of it

    front = await asyncio.start_server(lose_the_answer, "127.0.0.1", 0)
    front_url = f"http://127.0.0.1:{front.sockets[0].getsockname()[1]}"
    client = Triggerfish(api_url=f"{front_url},{served.url}", secret_key=served.key, socket=False)
    try:
        handle = await client.tasks.trigger_async("job", {"n": 1})
    finally:
        await client.aclose()
        front.close()
    runs = (await served.http.get("/api/v1/runs")).json()["data"]
    assert [r["id"] for r in runs] == [handle.id]


async def test_the_worker_moves_to_the_next_server_when_its_server_stops(engine: Engine) -> None:
    """Two servers on one database; the worker's first one stops mid-attempt: its
    heartbeats, reports and claims go on at the second at once."""
    key, _ = await engine.environments.create_key("dev", "test")
    ports = [support.free_port(), support.free_port()]
    servers = [make_server(engine, "127.0.0.1", port) for port in ports]
    serving = [await support.serve_in_loop(server) for server in servers]
    first, second = (f"http://127.0.0.1:{port}" for port in ports)
    api = WorkerApi(f"{first},{second}", key)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(base_url=second, headers=headers) as http:
            body = {"version": "v1", "name": "w", "concurrency": 2, "tasks": [MANIFEST]}
            worker_id = (await api.register(body))["worker_id"]
            run_ids = [
                (await http.post("/api/v1/tasks/job/trigger", json={"payload": {}})).json()["id"]
                for _ in range(2)
            ]
            (claimed,) = await api.dequeue(worker_id, 1, wait=5, start=1)
            assert api.api_url == first
            await support.stop_serving(servers[0], serving[0])
            held = [claimed.job.attempt_id]
            assert await api.heartbeat(worker_id, held) == []  # still its attempt
            assert api.api_url == second
            report = CompletionReport(claimed.job.run_id, held[0], Succeeded("done"))
            claim = ClaimRequest(worker_id, max=1, start=1)
            answer = await api.reports([], [report], claim, give_up_after=5)
            assert answer.completions[0].status == "COMPLETED"
            assert [r.job.run_id for r in answer.runs] == [
                r for r in run_ids if r != claimed.job.run_id
            ]
            # task processes get every server, the one in use first
            assert answer.runs[0].job.api_url == f"{second},{first}"
    finally:
        await api.close()
        await support.stop_serving(servers[1], serving[1])


async def test_a_heartbeat_left_unanswered_takes_the_workers_long_poll_to_the_next_server(
    engine: Engine,
) -> None:
    """The first server hangs: a heartbeat unanswered ``within`` its limit goes to
    the second, and the long poll for work waiting on the first goes along at
    once (not after its own 20-second wait)."""
    key, _ = await engine.environments.create_key("dev", "test")
    port = support.free_port()
    server = make_server(engine, "127.0.0.1", port)
    serving = await support.serve_in_loop(server)
    good = f"http://127.0.0.1:{port}"
    alone = WorkerApi(good, key, socket=False)
    with _hung_server() as hung:
        api = WorkerApi(f"{hung},{good}", key, socket=False)
        try:
            body = {"version": "v1", "name": "w", "concurrency": 1, "tasks": [MANIFEST]}
            worker_id = (await alone.register(body))["worker_id"]
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(base_url=good, headers=headers) as http:
                trigger = await http.post("/api/v1/tasks/job/trigger", json={"payload": {}})
            polling = asyncio.ensure_future(api.dequeue(worker_id, 1, wait=20, start=1))
            assert await api.heartbeat(worker_id, [], within=0.5) == []
            assert api.api_url == good
            (claimed,) = await asyncio.wait_for(polling, 10)
            assert claimed.job.run_id == trigger.json()["id"]
        finally:
            await api.close()
            await alone.close()
            await support.stop_serving(server, serving)
