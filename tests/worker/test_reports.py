"""The worker's report batches: what shares a request, and when a batch waits.

The server side of a batch is tested with the worker API; here the reporter
talks to a recording stand-in for it, which answers each item and hands out
the runs a test scripts for the claims.
"""

from __future__ import annotations

import asyncio
from typing import Any

from triggerfish.worker.reports import Reporter


class RecordingApi:
    """Answers ``reports`` calls like the server, and remembers each request."""

    def __init__(self, claims: list[list[dict[str, Any]]]) -> None:
        self.requests: list[dict[str, Any]] = []
        self._claims = claims  # the runs each claiming request gets, in order

    async def reports(self, body: dict[str, Any], *, give_up_after: float) -> dict[str, Any]:
        self.requests.append(body)
        await asyncio.sleep(0)  # an answer comes back later than the request goes out
        runs = self._claims.pop(0) if "claim" in body and self._claims else []
        starts = [{"attempt_id": s["attempt_id"], "status": "EXECUTING"} for s in body["starts"]]
        done = [{"attempt_id": c["attempt_id"], "status": "COMPLETED"} for c in body["completions"]]
        return {"runs": runs, "starts": starts, "completions": done}

    def completed(self) -> list[list[str]]:
        return [[c["attempt_id"] for c in r["completions"]] for r in self.requests]


def _reporter(api: RecordingApi, linger: float, taken: list[dict[str, Any]]) -> Reporter:
    return Reporter(
        api,  # type: ignore[arg-type]
        lambda: 30.0,
        claim=lambda finished: {"worker_id": "w", "max": 2, "start": 2},
        claimed=taken.extend,
        linger=linger,
    )


def _done(attempt: str) -> dict[str, Any]:
    return {"run_id": f"run-{attempt}", "ok": True, "output": None}


async def test_an_idle_worker_reports_at_once() -> None:
    api = RecordingApi(claims=[])
    reporter = _reporter(api, linger=30.0, taken=[])
    # nothing was claimed before: the queue is drained, so the report cannot wait
    answer = await asyncio.wait_for(reporter.complete("a1", _done("a1")), 5)
    assert answer["status"] == "COMPLETED"
    assert api.completed() == [["a1"]]


async def test_while_work_keeps_coming_reports_share_a_request() -> None:
    run = {"run_id": "r9", "attempt_id": "a9"}
    api = RecordingApi(claims=[[run], [], []])
    taken: list[dict[str, Any]] = []
    reporter = _reporter(api, linger=0.5, taken=taken)
    await reporter.complete("a1", _done("a1"))  # its claim brings a run: work is flowing
    assert taken == [run]

    second = asyncio.create_task(reporter.complete("a2", _done("a2")))
    await asyncio.sleep(0.05)  # well inside the linger: the first is still waiting
    assert not second.done() and len(api.requests) == 1
    third = asyncio.create_task(reporter.complete("a3", _done("a3")))
    await asyncio.wait_for(asyncio.gather(second, third), 5)

    assert api.completed() == [["a1"], ["a2", "a3"]]  # one request, one commit for both
    # that claim came back empty: the queue is drained, and the next report goes at once
    await asyncio.wait_for(reporter.complete("a4", _done("a4")), 0.4)
    assert api.completed()[-1] == ["a4"]


async def test_without_a_linger_each_report_goes_when_the_last_is_answered() -> None:
    api = RecordingApi(claims=[[{"run_id": "r9", "attempt_id": "a9"}], [], []])
    reporter = _reporter(api, linger=0.0, taken=[])
    await reporter.complete("a1", _done("a1"))
    await reporter.complete("a2", _done("a2"))
    await reporter.complete("a3", _done("a3"))
    assert api.completed() == [["a1"], ["a2"], ["a3"]]
