"""A task process's own journal writes (``worker/_direct.py``) against a real server.

A write is answered as the worker's relay would answer it; anything the direct
socket cannot settle (no server, a frame too large, a server error) comes back
as None, for the relay to send, and never as a wrong answer.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from tests.api.conftest import Served, served
from triggerfish._domain.attempts import Job
from triggerfish.engine import Engine
from triggerfish.worker import _direct
from triggerfish.worker._direct import DirectJournal

__all__ = ["served"]  # the fixture, imported for these tests


async def _executing(served: Served) -> Job:
    """A job for a run this worker has claimed and started."""
    [run_id] = await served.trigger(1)
    [claimed] = await served.api.dequeue(served.worker_id, 1, 0, start=1)
    assert claimed.job.run_id == run_id and claimed.job.direct is not None
    return claimed.job


def _entry(seq: int, result: Any = None) -> dict[str, Any]:
    return {"seq": seq, "kind": "step", "name": f"s{seq}", "status": "OK", "result": result}


async def _write(direct: DirectJournal, entry: dict[str, Any]) -> dict[str, Any] | None:
    # the writer blocks (it runs in a task process); the server runs on this loop
    return await asyncio.to_thread(direct.write, entry)


async def test_journal_writes_reach_the_run_and_stale_ones_are_refused(
    served: Served, engine: Engine
) -> None:
    job = await _executing(served)
    direct = DirectJournal()
    direct.bind(job)
    try:
        assert await _write(direct, _entry(0, {"n": 1})) == {"ok": True}
        assert await _write(direct, _entry(1, [1, 2])) == {"ok": True}
        # the same write again (a retry) changes nothing
        assert await _write(direct, _entry(1, [1, 2])) == {"ok": True}
        journal = (await engine.journal.for_runs([job.run_id]))[job.run_id]
        steps = [(e["name"], e["status"], e["result"]) for e in journal]
        assert steps == [("s0", "OK", {"n": 1}), ("s1", "OK", [1, 2])]

        # once the run is canceled the attempt is stale: refused, as over the relay
        r = await served.http.post(f"/api/v2/runs/{job.run_id}/cancel")
        assert r.status_code == 200, r.text
        refused = await _write(direct, _entry(2))
        assert refused is not None and refused["_status"] == 409
    finally:
        direct.close()


async def test_what_the_socket_cannot_settle_is_left_to_the_relay(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await _executing(served)
    direct = DirectJournal()

    # a worker talking HTTP gives no link: everything goes through it
    direct.bind(replace(job, direct=None))
    assert await _write(direct, _entry(0)) is None

    # a frame above the server's limit is not sent
    assert job.direct is not None
    direct.bind(replace(job, direct=replace(job.direct, max_frame=64)))
    assert await _write(direct, _entry(0, "x" * 100)) is None

    # no server there: relayed, and for a while not even tried
    nowhere = replace(job.direct, url="ws://127.0.0.1:9/worker/v1/socket")
    direct.bind(replace(job, direct=nowhere))
    assert await _write(direct, _entry(0)) is None
    tried: list[str] = []
    monkeypatch.setattr(DirectJournal, "_connected", lambda self, link: tried.append("x"))
    assert await _write(direct, _entry(0)) is None
    assert tried == []

    # after the pause it tries again, and a good link works at once
    monkeypatch.undo()
    monkeypatch.setattr(_direct, "RETRY_AFTER", 0.0)
    direct.bind(job)
    direct._retry_at = 0.0
    try:
        assert await _write(direct, _entry(0, 7)) == {"ok": True}
    finally:
        direct.close()


class _Silent:
    """A connection to a hung server: writes go out, no answer comes back."""

    def send(self, data: str) -> None:
        pass


def _unanswered(conn: Any, call_id: int, timeout: float) -> dict[str, Any]:
    time.sleep(timeout)
    raise TimeoutError


async def test_a_write_waiting_on_a_server_the_worker_left_follows_the_worker(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = await _executing(served)
    assert job.direct is not None
    hung = replace(job.direct, url="ws://hung.invalid/worker/v1/socket")
    direct = DirectJournal()
    direct.bind(replace(job, direct=hung))
    monkeypatch.setattr(DirectJournal, "_connected", lambda self, link: _Silent())
    monkeypatch.setattr(_direct, "answer_to", _unanswered)

    # a server that stays silent: relayed after the answer timeout, then not tried
    # again for a while, even when the worker names it again (it is still on it)
    # (an answer timeout long enough that a loaded machine cannot blur the two cases)
    monkeypatch.setattr(_direct, "ANSWER_TIMEOUT", 1.0)
    assert await _write(direct, _entry(0)) is None
    direct.follow(hung)
    started = time.monotonic()
    assert await _write(direct, _entry(0)) is None
    assert time.monotonic() - started < 0.5

    # a write waiting there gives up as soon as the worker moves to another server
    monkeypatch.setattr(_direct, "ANSWER_TIMEOUT", 30.0)
    direct.bind(replace(job, direct=hung))
    direct._retry_at = 0.0
    direct.watch = lambda: direct.follow(job.direct)
    started = time.monotonic()
    assert await _write(direct, _entry(0)) is None
    assert time.monotonic() - started < 5.0

    # and the next one goes straight to the server the worker moved to
    monkeypatch.undo()
    try:
        assert await _write(direct, _entry(0, 7)) == {"ok": True}
    finally:
        direct.close()
