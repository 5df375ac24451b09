"""The runs list and its actions, in process: pages, filters, search, bulk cancel and replay."""

from __future__ import annotations

import re

import httpx
import pytest

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


def _form(html: str) -> dict[str, str]:
    """The hidden fields of the confirmation's form."""
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', html))


async def test_bulk_actions_on_every_run_matching_the_filter(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triggerfish.dashboard import runs as pages

    # small batches and a small per-request bound, so 15 runs take two requests
    monkeypatch.setattr(pages, "BULK_BATCH", 4)
    monkeypatch.setattr(pages, "BULK_PER_REQUEST", 10)
    env = await engine.environments.by_slug("dev")
    await bare_worker(engine, env.id)
    ids = []
    for i in range(30):
        req = TriggerRequest("t", {"i": i}, idempotency_key=f"key-{i}", tags=[f"n{i % 2}"])
        ids.append((await engine.enqueue.trigger(env.id, req)).id)
    odd = set(ids[1::2])
    app = create_app(engine, manage_engine=False, dashboard_dev=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dashboard.test"
    ) as http:
        await http.get("/login")  # a dev server signs in by itself
        listing = await http.get("/runs?tag=n1")
        assert 'href="/runs-bulk?action=cancel&amp;tag=n1"' in listing.text
        confirm = await http.get("/runs-bulk?action=cancel&tag=n1")
        assert confirm.status_code == 200
        assert 'data-count="15"' in confirm.text and "Cancel 15 runs" in confirm.text
        assert "tag n1" in confirm.text  # the filter, named
        fields = _form(confirm.text)
        assert fields["scope"] == "filter" and fields["through"] == ids[-1]
        # a run created after the confirmation matches the filter but is not touched
        late = await engine.enqueue.trigger(env.id, TriggerRequest("t", {}, tags=["n1"]))

        first = await http.post("/runs-bulk", data=fields)
        assert first.status_code == 200  # 10 done: the confirmation for the rest
        assert "cancel: 10 runs done so far" in first.text
        assert 'data-count="5"' in first.text and "Cancel 5 runs" in first.text
        rest = _form(first.text)
        assert "after" in rest and "through" not in rest
        done = await http.post("/runs-bulk", data=rest)
        assert done.status_code == 303
        assert done.headers["location"] == "/runs?tag=n1&notice=cancel%3A+5+runs"

        statuses = {
            run_id: (await engine.runs.retrieve(env.id, run_id)).run.status
            for run_id in [*ids, late.id]
        }
        assert {r for r, s in statuses.items() if s == "CANCELED"} == odd
        assert statuses[late.id] == "QUEUED"
        again = await http.get("/runs-bulk?action=cancel&tag=n1&status=QUEUED")
        assert 'data-count="1"' in again.text  # only the late one is left

        # replay all matching a search (a run id or idempotency key)
        by_key = await http.get("/runs-bulk?action=replay&q=key-4")
        assert 'data-count="1"' in by_key.text and "Replay 1 runs" in by_key.text
        replayed = await http.post("/runs-bulk", data=_form(by_key.text))
        assert replayed.headers["location"] == "/runs?q=key-4&notice=replay%3A+1+runs"
        newest, _tags, _more = await engine.runs.page(
            env.id, RunFilter(), size=1, after=None, before=None
        )
        assert newest[0].replay_of == ids[4]

        # nothing matches: no form
        none = await http.get("/runs-bulk?action=replay&tag=nobody")
        assert 'data-count="0"' in none.text and 'name="scope"' not in none.text
        # a bad action or a forged form is refused
        assert (await http.get("/runs-bulk?action=delete")).status_code == 422
        forged = {k: v for k, v in fields.items() if k != "csrf"}
        assert (await http.post("/runs-bulk", data=forged)).status_code == 403
