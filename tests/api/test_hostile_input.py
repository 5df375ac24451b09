"""Hostile input is refused at the door with a 4xx naming the field, and nothing
accepted breaks a later read (issue 17, defects 2, 5, 7 and 8)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.routing import APIRoute
from websockets.asyncio.client import connect

from tests.api.conftest import Served
from triggerfish.api.app import create_app
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine import Engine

TRIGGER = "/api/v1/tasks/job/trigger"
JSON = {"content-type": "application/json"}


async def _post_raw(served: Served, path: str, body: str, method: str = "POST") -> Any:
    return await served.http.request(method, path, content=body.encode(), headers=JSON)


async def _reads_still_work(served: Served) -> None:
    listed = await served.http.get("/api/v1/runs")
    assert listed.status_code == 200, listed.text
    for item in listed.json()["data"]:
        one = await served.http.get(f"/api/v3/runs/{item['id']}")
        assert one.status_code == 200, one.text
    tokens = await served.http.get("/api/v1/waitpoints/tokens")
    assert tokens.status_code == 200, tokens.text


HOSTILE_TRIGGERS = [
    ('{"payload": {"a": "\\ud800"}}', "payload.a"),
    ('{"payload": ["ok", "x\\u0000y"]}', "payload.1"),
    ('{"payload": 1, "options": {"metadata": {"m": "\\udfff"}}}', "options.metadata.m"),
    ('{"options": {"tags": ["a\\u0000"]}}', "options.tags"),
    ('{"options": {"idempotencyKey": "k\\u0000"}}', "options.idempotencyKey"),
    ('{"options": {"queue": {"name": "q\\ud800"}}}', "options.queue.name"),
    ('{"options": {"concurrencyKey": "' + "k" * 513 + '"}}', "options.concurrencyKey"),
    ('{"payload": NaN}', "payload"),
    ('{"payload": {"x": -Infinity}}', "payload.x"),
    ('{"payload": {"x": 1e999}}', "payload.x"),
    ('{"payload": 123456789012345678901234567890}', "payload"),
    ('{"options": {"priority": 1e12}}', "options.priority"),
    ('{"options": {"delay": -1}}', "options.delay"),
    ('{"options": {"ttl": "99999999999999d"}}', "options.ttl"),
]


async def test_hostile_triggers_are_refused_naming_the_field(served: Served) -> None:
    for body, field in HOSTILE_TRIGGERS:
        r = await _post_raw(served, TRIGGER, body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"].startswith(field), (body, r.text)
    await served.trigger(1)
    await _reads_still_work(served)


async def test_deep_nesting_is_refused(served: Served) -> None:
    for depth in (100, 1_000, 100_000):
        r = await _post_raw(served, TRIGGER, '{"payload": ' + "[" * depth + "]" * depth + "}")
        assert r.status_code == 422, (depth, r.text)
        assert "nested deeper" in r.json()["error"]


async def test_a_numeric_delay_is_seconds_from_now(served: Served) -> None:
    r = await served.http.post(TRIGGER, json={"payload": 1, "options": {"delay": 3600}})
    assert r.status_code == 200, r.text
    assert await served.status(r.json()["id"]) == "DELAYED"


HOSTILE_REQUESTS = [
    ("GET", "/api/v1/runs/x/logs?after=99999999999999999999999", None, "after"),
    ("GET", "/api/v1/runs?filter[tag]=a%00b", None, "filter[tag]"),
    ("GET", "/api/v1/runs?filter[createdAt][from]=99999999999999999999", None, "filter"),
    ("GET", "/api/v1/schedules?page=100000000000000000000000000000", None, "page"),
    ("GET", "/api/v1/queues?page=100000000000000000000000000000", None, "page"),
    ("PUT", "/api/v1/kv/a%00b", '{"value": 1}', "path"),
    ("POST", "/api/v1/events", '{"name": "e\\u0000"}', "name"),
    ("POST", "/api/v1/waitpoints/tokens", '{"timeout": 1e30}', "timeout"),
    ("POST", "/api/v1/waitpoints/tokens", '{"timeout": "99999999999999d"}', "timeout"),
    ("POST", "/api/v1/waitpoints/tokens", '{"idempotencyKey": "\\ud800"}', "idempotencyKey"),
    ("POST", "/api/v1/queues/task%2Fjob/rate-limit", '{"limit": 1, "period": 1e308}', "period"),
    (
        "POST",
        "/api/v1/queues/task%2Fjob/rate-limit",
        '{"limit": 100000000000000000000000, "period": 1}',
        "limit",
    ),
]


async def test_hostile_requests_on_other_routes_are_refused(served: Served) -> None:
    await served.trigger(1)
    for method, path, body, field in HOSTILE_REQUESTS:
        if body is None:
            r = await served.http.request(method, path)
        else:
            r = await _post_raw(served, path, body, method)
        assert 400 <= r.status_code < 500, (path, r.text)
        assert field in r.json()["error"].partition(": ")[0], (path, r.text)
    await _reads_still_work(served)


async def test_a_long_created_at_period_lists_everything(served: Served) -> None:
    [run_id] = await served.trigger(1)
    r = await served.http.get("/api/v1/runs?filter[createdAt][period]=99999999999999d")
    assert r.status_code == 200, r.text
    assert [d["id"] for d in r.json()["data"]] == [run_id]


async def test_replay_from_a_huge_step_is_refused(served: Served) -> None:
    [run_id] = await served.trigger(1)
    r = await served.http.post(
        f"/api/v1/runs/{run_id}/replay", json={"fromStep": 100000000000000000000000}
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith("fromStep"), r.text


async def test_metadata_increment_overflow_is_refused(served: Served) -> None:
    [run_id] = await served.trigger(1)
    path = f"/api/v1/runs/{run_id}/metadata"
    ops = [{"type": "increment", "key": "n", "value": 2**63 - 1}]
    assert (await served.http.put(path, json={"operations": ops})).status_code == 200
    r = await served.http.put(path, json={"operations": ops})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("operations[0].value"), r.text
    assert (await served.http.get(path)).json()["metadata"] == {"n": 2**63 - 1}


@pytest.mark.parametrize("path", ["/api/v1/socket", "/worker/v1/socket"])
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_open(
    served: Served, path: str
) -> None:
    url = "ws" + served.url.removeprefix("http") + path
    headers = {"Authorization": f"Bearer {served.key}"}
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        for frame, field in [
            ('{"id": {"a": 1}, "op": "x"}', "id"),
            ('{"id": 1, "op": ' + "[" * 100_000 + "]" * 100_000 + "}", "frame"),
            ('{"id": 2, "op": "x", "body": {"v": NaN}}', "frame.body.v"),
        ]:
            await ws.send(frame)
            answer = json.loads(await ws.recv())
            assert answer["status"] == 422, answer
            assert answer["error"].startswith(field), answer
        # still serving: an unknown op is answered under its id
        await ws.send('{"id": 3, "op": "nope"}')
        answer = json.loads(await ws.recv())
        assert answer["id"] == 3 and answer["status"] == 400, answer


def _every_route(routes: list[Any]) -> list[Any]:
    found = []
    for r in routes:
        # FastAPI keeps an included router whole (``original_router``)
        inner = getattr(r, "original_router", None)
        found += _every_route(inner.routes) if inner is not None else [r]
    return found


def test_every_documented_route_reads_its_input_strictly(engine: Engine) -> None:
    app = create_app(engine, manage_engine=False)
    documented = [
        r
        for r in _every_route(app.routes)
        if isinstance(r, APIRoute) and r.include_in_schema and r.path not in ("/healthz", "/readyz")
    ]
    assert len(documented) > 50  # the walk reached the included routers
    assert [r.path for r in documented if not isinstance(r, StrictJsonRoute)] == []
