"""The runs list and its actions, in process: pages, filters, search, bulk cancel and replay."""

from __future__ import annotations

import re

import httpx

from tests.support.in_process import bare_worker
from triggerfish._domain.filters import RunFilter
from triggerfish.api.app import create_app
from triggerfish.dashboard.tasks import example_from_schema
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest


async def test_pages_filters_search_and_bulk_actions(engine: Engine) -> None:
    env = await engine.environments.by_slug("dev")
    await bare_worker(engine, env.id)
    ids = []
    for i in range(30):
        req = TriggerRequest("t", {"i": i}, idempotency_key=f"key-{i}", tags=[f"n{i % 2}"])
        ids.append((await engine.enqueue.trigger(env.id, req)).id)
    app = create_app(engine, manage_engine=False, dashboard_dev=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://dashboard.test", follow_redirects=True
    ) as http:
        first = await http.get("/runs")
        rows = re.findall(r'id="row-(run_\w+)"', first.text)
        assert rows == list(reversed(ids))[:25]  # newest first, a page of 25
        older = re.search(r'href="/runs\?(after=run_\w+)"', first.text)
        assert older is not None
        second = await http.get(f"/runs?{older.group(1)}")
        assert re.findall(r'id="row-(run_\w+)"', second.text) == list(reversed(ids))[25:]

        tagged = await http.get("/runs?tag=n1")
        assert len(re.findall(r'id="row-', tagged.text)) == 15
        by_id = await http.get(f"/runs?q={ids[3]}")
        assert re.findall(r'id="row-(run_\w+)"', by_id.text) == [ids[3]]
        by_key = await http.get("/runs?q=key-7")
        assert re.findall(r'id="row-(run_\w+)"', by_key.text) == [ids[7]]
        bad = await http.get("/runs?status=NOPE")
        assert "status: unknown status" in bad.text

        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', first.text)
        assert csrf is not None
        done = await http.post(
            "/runs-bulk",
            data={"csrf": csrf.group(1), "action": "cancel", "run": [ids[0], ids[1]]},
        )
        assert "cancel: 2 runs" in done.text
        for run_id in ids[:2]:
            assert (await engine.runs.retrieve(env.id, run_id)).run.status == "CANCELED"
        replayed = await http.post(
            "/runs-bulk", data={"csrf": csrf.group(1), "action": "replay", "run": [ids[0]]}
        )
        assert "replay: 1 runs" in replayed.text
        page, _tags, _more = await engine.runs.page(
            env.id, RunFilter(), size=1, after=None, before=None
        )
        assert page[0].replay_of == ids[0]


def test_example_payloads_follow_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "default": "Ada"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {"$ref": "#/$defs/Address"},
            "nick": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "kind": {"enum": ["a", "b"]},
        },
        "$defs": {"Address": {"type": "object", "properties": {"city": {"examples": ["Oslo"]}}}},
    }
    assert example_from_schema(schema) == {
        "name": "Ada",
        "age": 0,
        "tags": [],
        "address": {"city": "Oslo"},
        "nick": "",
        "kind": "a",
    }
    assert example_from_schema(None) == {}
