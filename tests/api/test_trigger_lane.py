"""The trigger lane answers exactly as the trigger route would, and only what it should.

Every request below is sent twice: once with the lane in place and once with the
lane forced to hand everything to the app (the route then answers). Status,
body and retry header must agree, and the lane must have answered the good
requests itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.test_public_api import api, auth
from triggerfish.api import trigger_lane

__all__ = ["api"]  # the fixture, imported for these tests

Request = tuple[str, dict[str, str] | None, bytes]


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


CASES: dict[str, tuple[str, str | None, str | None, bytes]] = {
    # name: (task, authorization (None: the dev key), content type, body)
    "plain": ("hello", None, "application/json", _json({"payload": {"who": "Ada"}})),
    "with options": (
        "hello",
        None,
        "application/json; charset=utf-8",
        _json({"payload": {}, "options": {"tags": ["a", "b"], "priority": 5, "ttl": "1h"}}),
    ),
    "delayed": ("hello", None, "application/json", _json({"options": {"delay": "10m"}})),
    "malformed json": ("hello", None, "application/json", b"{nope"),
    "empty body": ("hello", None, "application/json", b""),
    "not an object": ("hello", None, "application/json", b"[1, 2]"),
    "bad option": ("hello", None, "application/json", _json({"options": {"machine": "huge"}})),
    "bad delay": ("hello", None, "application/json", _json({"options": {"delay": "soon"}})),
    "schema mismatch": ("hello", None, "application/json", _json({"payload": {"who": 5}})),
    "unknown task": ("helo", None, "application/json", _json({"payload": {}})),
    "task with a slash": ("a/b", None, "application/json", _json({"payload": {}})),
    "no key": ("hello", "", "application/json", _json({"payload": {}})),
    "unknown key": ("hello", "Bearer tr_dev_nope", "application/json", _json({})),
    "basic auth": ("hello", "Basic abc", "application/json", _json({})),
    "form body": ("hello", None, "application/x-www-form-urlencoded", b"payload=1"),
}

#: the lane answers these itself (refusals from the engine included) ...
ANSWERED_BY_THE_LANE = {
    "plain",
    "with options",
    "delayed",
    "schema mismatch",
    "unknown task",
    "task with a slash",
}
#: ... and hands these on without reading them
NOT_JSON = {"form body"}


@pytest.fixture
def lane_answers(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the lane answered each trigger request it looked at."""
    seen: list[bool] = []
    decide = trigger_lane.TriggerLane._trigger

    async def spy(self: Any, *args: Any) -> Any:
        answer = await decide(self, *args)
        seen.append(answer is not None)
        return answer

    monkeypatch.setattr(trigger_lane.TriggerLane, "_trigger", spy)
    return seen


async def _send(api: dict[str, Any], case: str) -> tuple[int, Any, str]:
    task, authorization, content_type, body = CASES[case]
    headers = {"content-type": content_type} if content_type else {}
    if authorization is None:
        headers.update(auth(api["dev"]))
    elif authorization:
        headers["Authorization"] = authorization
    r = await api["client"].post(f"/api/v1/tasks/{task}/trigger", headers=headers, content=body)
    answer = r.json()
    if isinstance(answer, dict) and "id" in answer:
        answer["id"] = answer["id"][:4]  # run ids differ between the two sends
    return r.status_code, answer, r.headers.get("x-should-retry", "")


@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_lane_answers_as_the_route_does(
    api: dict[str, Any], lane_answers: list[bool], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    through_lane = await _send(api, case)
    expected = [] if case in NOT_JSON else [case in ANSWERED_BY_THE_LANE]
    assert lane_answers == expected

    async def leave_to_the_app(self: Any, *args: Any) -> None:
        return None

    monkeypatch.setattr(trigger_lane.TriggerLane, "_trigger", leave_to_the_app)
    through_route = await _send(api, case)
    assert through_lane == through_route


async def test_a_lane_trigger_is_a_whole_run(api: dict[str, Any], lane_answers: list[bool]) -> None:
    c, key = api["client"], api["dev"]
    body = {
        "payload": {"who": "Ada"},
        "options": {"tags": ["x"], "metadata": {"m": 1}, "idempotencyKey": "k" * 64},
    }
    first = await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json=body)
    again = await c.post("/api/v1/tasks/hello/trigger", headers=auth(key), json=body)
    assert lane_answers == [True, True]
    run_id = first.json()["id"]
    assert again.json() == {"id": run_id, "isCached": True}
    run = (await c.get(f"/api/v3/runs/{run_id}", headers=auth(key))).json()
    assert (run["status"], run["payload"], run["tags"], run["metadata"]) == (
        "QUEUED",
        {"who": "Ada"},
        ["x"],
        {"m": 1},
    )


async def test_only_trigger_posts_take_the_lane(
    api: dict[str, Any], lane_answers: list[bool]
) -> None:
    c, key = api["client"], api["dev"]
    assert (await c.get("/api/v1/tasks/hello/trigger", headers=auth(key))).status_code == 405
    r = await c.post("/api/v1/tasks/hello/batch", headers=auth(key), json={"items": []})
    assert r.status_code in (404, 405, 422)
    assert lane_answers == []
