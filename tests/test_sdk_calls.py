"""Client calls without a server: one definition per call, both faces, typed options."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

import pytest

import triggerfish
from triggerfish import envvars, events, kv, schedules
from triggerfish._domain.retry import RetryPolicy
from triggerfish.sdk._calls import (
    Call,
    DefaultNamespace,
    Namespace,
    Subscription,
    declared_face,
    default_faces,
)
from triggerfish.sdk._client import Triggerfish
from triggerfish.sdk._durable import DurableRun, activate, deactivate
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.sdk._runs import Runs
from triggerfish.sdk._task import RunHandle
from triggerfish.sdk._tasks import Tasks

T = TypeVar("T")


class Recorder:
    """A transport that records each call and answers from a canned body."""

    def __init__(self, answer: Any) -> None:
        self.answer, self.calls = answer, list[Call[Any]]()
        self.subscriptions = list[Subscription[Any]]()

    def send(self, call: Call[T]) -> T:
        self.calls.append(call)
        return call.parse(self.answer)

    async def send_async(self, call: Call[T]) -> T:
        self.calls.append(call)
        return call.parse(self.answer)

    def subscribe(self, sub: Subscription[T]) -> Iterator[T]:
        self.subscriptions.append(sub)
        for event, data in self.answer:
            item = sub.parse(event, data)
            if item is not None:
                yield item

    async def subscribe_async(self, sub: Subscription[T]) -> AsyncIterator[T]:
        for item in self.subscribe(sub):
            yield item


def _namespaces(client: Triggerfish) -> dict[str, Namespace]:
    return {name: ns for name, ns in vars(client).items() if isinstance(ns, Namespace)}


def test_every_client_call_has_a_sync_and_an_async_face() -> None:
    client = Triggerfish(secret_key="tr_dev_x", socket=False)
    namespaces = _namespaces(client)
    assert set(namespaces) >= {"tasks", "runs", "queues", "environment", "batches"}
    assert set(namespaces) >= {"schedules", "waitpoints", "events", "kv", "envvars"}
    for name, ns in namespaces.items():
        calls = [a for a in dir(ns) if not a.startswith("_") and callable(getattr(ns, a))]
        for call in calls:
            twin = call[: -len("_async")] if call.endswith("_async") else f"{call}_async"
            assert twin in calls, f"client.{name}.{call} has no {twin}"
            face = getattr(type(ns), call)
            is_async = inspect.iscoroutinefunction(face) or inspect.isasyncgenfunction(face)
            assert is_async == call.endswith("_async"), call
    for module in (kv, events, schedules, envvars):
        names = [n for n in dir(module) if not n.startswith("_") and n.endswith("_async")]
        assert names, module
        for name in names:
            assert callable(getattr(module, name[: -len("_async")]))


def test_a_declared_module_level_face_must_match_its_definition() -> None:
    """``schedules.create(..., client=)`` is typed by a declaration that cannot drift."""

    def _get(schedule_id: str, *, full: bool = False) -> Call[int]:
        return Call("GET", f"/x/{schedule_id}", int)

    def good(schedule_id: str, *, full: bool = False, client: Triggerfish | None = None) -> int:
        raise NotImplementedError

    def renamed(sid: str, *, full: bool = False, client: Triggerfish | None = None) -> int:
        raise NotImplementedError

    def no_client(schedule_id: str, *, full: bool = False) -> int:
        raise NotImplementedError

    def other_answer(schedule_id: str, *, full: bool = False, client: None = None) -> str:
        raise NotImplementedError

    face = declared_face(_get)(good)
    assert face.__name__ == "get" and face is not good
    for wrong in (renamed, no_client, other_answer):
        with pytest.raises(TypeError, match=wrong.__name__):
            declared_face(_get)(wrong)
    with pytest.raises(TypeError, match="async def"):
        declared_face(_get, is_async=True)(good)
    recorder = Recorder({"timezones": ["UTC"]})
    client = Triggerfish(secret_key="tr_dev_x", socket=False)
    client._transport = recorder  # type: ignore[assignment]
    assert schedules.timezones(client=client) == ["UTC"]
    assert asyncio.run(schedules.timezones_async(exclude_utc=True, client=client)) == ["UTC"]
    assert [c.params for c in recorder.calls] == [{}, {"excludeUtc": "true"}]


def test_a_module_level_namespace_refuses_an_undeclared_face() -> None:
    def _get(key: str) -> Call[int]:
        return Call("GET", f"/x/{key}", int)

    with pytest.raises(TypeError, match=r"Undeclared.get: declare it with @declared_face"):

        class Undeclared(DefaultNamespace):
            get = staticmethod(default_faces(_get)[0])


def test_module_level_kv_and_events_calls_send_with_the_client_given() -> None:
    recorder = Recorder({"found": True, "value": 3, "deleted": True, "id": "e1"})
    client = Triggerfish(secret_key="tr_dev_x", socket=False)
    client._transport = recorder  # type: ignore[assignment]
    assert kv.get("k", client=client) == 3
    assert asyncio.run(kv.get_async("k", default=0, client=client)) == 3
    assert kv.set("k", 1, ttl="1m", client=client) is None
    assert asyncio.run(kv.set_async("k", 1, client=client)) is None
    assert kv.delete("k", client=client) is True
    assert asyncio.run(kv.delete_async("k", client=client)) is True
    assert events.send("e", {"a": 1}, id="e1", client=client)["id"] == "e1"
    assert asyncio.run(events.send_async("e", client=client))["id"] == "e1"
    sent = [(c.method, c.path, c.json) for c in recorder.calls]
    assert sent == [
        ("GET", "/api/v1/kv/k", None),
        ("GET", "/api/v1/kv/k", None),
        ("PUT", "/api/v1/kv/k", {"value": 1, "ttl": 60.0}),
        ("PUT", "/api/v1/kv/k", {"value": 1}),
        ("DELETE", "/api/v1/kv/k", None),
        ("DELETE", "/api/v1/kv/k", None),
        ("POST", "/api/v1/events", {"name": "e", "payload": {"a": 1}, "id": "e1"}),
        ("POST", "/api/v1/events", {"name": "e", "payload": None}),
    ]
    with pytest.raises(TypeError):
        kv.get("k", clinet=client)  # type: ignore[call-arg]
    for face in (kv.get, kv.set_async, kv.delete, events.send, events.send_async):
        assert list(inspect.signature(face).parameters)[-1] == "client", face.__name__


def test_module_level_envvars_calls_send_with_the_client_given() -> None:
    recorder = Recorder(
        {"name": "A", "value": "1", "isSecret": False, "written": ["A"], "kept": []}
    )
    client = Triggerfish(secret_key="tr_dev_x", socket=False)
    client._transport = recorder  # type: ignore[assignment]
    assert envvars.retrieve("A", client=client).value == "1"
    assert asyncio.run(envvars.retrieve_async("A", client=client)).name == "A"
    assert envvars.set("A", "1", secret=True, client=client) is None
    assert asyncio.run(envvars.set_async("A", "1", client=client)) is None
    assert envvars.delete("A", client=client) is None
    assert asyncio.run(envvars.delete_async("A", client=client)) is None
    assert envvars.upload({"A": "1"}, override=True, client=client).written == ["A"]
    assert asyncio.run(envvars.upload_async({"A": "1"}, client=client)).kept == []
    recorder.answer = {"data": [{"name": "A", "value": "1", "isSecret": False}]}
    assert [v.name for v in envvars.list(client=client)] == ["A"]
    assert [v.name for v in asyncio.run(envvars.list_async(client=client))] == ["A"]
    sent = [(c.method, c.path, c.json) for c in recorder.calls]
    assert sent == [
        ("GET", "/api/v1/envvars/A", None),
        ("GET", "/api/v1/envvars/A", None),
        ("PUT", "/api/v1/envvars/A", {"value": "1", "isSecret": True}),
        ("PUT", "/api/v1/envvars/A", {"value": "1", "isSecret": False}),
        ("DELETE", "/api/v1/envvars/A", None),
        ("DELETE", "/api/v1/envvars/A", None),
        (
            "POST",
            "/api/v1/envvars/import",
            {"variables": {"A": "1"}, "override": True, "isSecret": False},
        ),
        (
            "POST",
            "/api/v1/envvars/import",
            {"variables": {"A": "1"}, "override": False, "isSecret": False},
        ),
        ("GET", "/api/v1/envvars", None),
        ("GET", "/api/v1/envvars", None),
    ]
    with pytest.raises(TypeError):
        envvars.set("A", "1", clinet=client)  # type: ignore[call-arg]
    faces = [getattr(envvars, n) for n in dir(envvars) if not n.startswith("_")]
    assert len(faces) == 10
    for face in faces:
        assert list(inspect.signature(face).parameters)[-1] == "client", face.__name__
        assert face.__qualname__ == f"EnvironmentVariables.{face.__name__}"


def test_both_faces_send_the_same_call() -> None:
    recorder = Recorder({"id": "run_1", "isCached": False})
    tasks = Tasks(recorder)
    sync = tasks.trigger("send", {"to": "a"}, tags=["x"], idempotency_key="k")
    on_loop = asyncio.run(tasks.trigger_async("send", {"to": "a"}, tags=["x"], idempotency_key="k"))
    assert sync == on_loop == RunHandle(id="run_1")
    first, second = recorder.calls
    assert (first.method, first.path, first.json, first.over_socket) == (
        second.method,
        second.path,
        second.json,
        second.over_socket,
    )
    assert first.json == {"payload": {"to": "a"}, "options": {"tags": ["x"], "idempotencyKey": "k"}}


def test_both_faces_of_a_subscription_read_the_same_stream() -> None:
    change = {"id": 7, "kind": "status", "runId": "run_1", "data": {"status": "EXECUTING"}}
    recorder = Recorder([("change", change), ("ping", None)])
    runs = Runs(recorder)

    async def collect() -> list[Any]:
        return [e async for e in runs.subscribe_async("run_1")]

    sync = list(runs.subscribe("run_1"))
    assert sync == asyncio.run(collect())
    assert [(e.id, e.status, e.run_id) for e in sync] == [(7, "EXECUTING", "run_1")]
    first, second = recorder.subscriptions
    assert first.path == second.path == "/api/v1/realtime/runs/run_1"
    assert list(runs.subscribe_to_tag(["a", "b"]))
    assert recorder.subscriptions[-1].params == {"tags": "a,b"}


def test_replay_returns_a_run_handle_like_a_trigger() -> None:
    recorder = Recorder({"id": "run_2"})
    handle = Runs(recorder).replay("run_1", from_step=3)
    assert handle == RunHandle(id="run_2")
    assert recorder.calls[0].path == "/api/v1/runs/run_1/replay"
    assert recorder.calls[0].json == {"fromStep": 3}
    Runs(recorder).replay("run_1", from_step=3, reuse_tokens=True)
    assert recorder.calls[1].json == {"fromStep": 3, "reuseCompletedTokens": True}


def test_a_misspelt_trigger_option_names_it_and_lists_the_valid_ones() -> None:
    client = Triggerfish(secret_key="tr_dev_x", socket=False)
    with collecting_into(TaskRegistry()):

        @triggerfish.task(id="send")
        def send(payload: dict[str, str]) -> None:
            return None

    with pytest.raises(TypeError, match="unknown trigger option 'tagz'") as caught:
        send.trigger({"to": "a"}, client=client, tagz=["x"])  # type: ignore[call-arg]
    assert "tags" in str(caught.value) and "idempotency_key" in str(caught.value)
    with pytest.raises(TypeError, match="'idempotency'"):
        client.tasks.trigger("send", {}, idempotency="k")  # type: ignore[call-arg]


def _in_task(transport: Any, *, is_async: bool) -> DurableRun:
    return DurableRun(
        run_id="run_1",
        attempt_id="attempt_1",
        task_id="t",
        retry=RetryPolicy(),
        is_async=is_async,
        transport=transport,
        loop=None,
    )


def test_kv_and_events_inside_a_task_go_through_the_worker_in_both_forms() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []

    def worker(op: str, body: dict[str, Any]) -> dict[str, Any]:
        sent.append((op, body))
        return {"found": True, "value": 7, "deleted": True, "id": "evt_1"}

    async def both_forms() -> list[Any]:
        return [
            kv.get("k"),
            await kv.get_async("k"),
            await kv.set_async("k", 1, ttl="1m"),  # type: ignore[func-returns-value]
            await kv.delete_async("k"),
            (await events.send_async("user.created", {"u": 1}, id="e1"))["id"],
        ]

    token = activate(_in_task(worker, is_async=True))
    try:
        assert asyncio.run(both_forms()) == [7, 7, None, True, "evt_1"]
    finally:
        deactivate(token)
    assert sent == [
        ("kv_get", {"key": "k"}),
        ("kv_get", {"key": "k"}),
        ("kv_set", {"key": "k", "value": 1, "ttl": 60.0}),
        ("kv_delete", {"key": "k"}),
        ("send_event", {"name": "user.created", "payload": {"u": 1}, "id": "e1"}),
    ]


def test_an_awaited_kv_call_in_a_task_leaves_the_event_loop_running() -> None:
    """The worker answers only after another coroutine ran: a blocked loop never gets there."""
    released = threading.Event()

    def slow_worker(op: str, body: dict[str, Any]) -> dict[str, Any]:
        if not released.wait(timeout=10):
            return {"_status": 504, "error": "the loop was blocked: nothing released the call"}
        return {"found": True, "value": "ok"}

    async def release() -> None:
        released.set()

    async def task_body() -> Any:
        got, _ = await asyncio.gather(kv.get_async("k"), release())
        return got

    token = activate(_in_task(slow_worker, is_async=True))
    try:
        assert asyncio.run(asyncio.wait_for(task_body(), timeout=20)) == "ok"
    finally:
        deactivate(token)
