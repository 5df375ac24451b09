"""Workers and subscriptions given two servers of one database (issue 17, defect 9):
when its server dies or hangs a worker moves to the other (at once, or within a
heartbeat interval), keeps its running attempt's lease, and goes on taking runs;
a subscription resumes there from its last event."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg

from tests import support
from triggerfish import Triggerfish
from triggerfish.sdk._models import RealtimeEvent


def test_a_worker_keeps_running_runs_after_its_first_server_is_stopped(
    pg_template: str, tmp_path: Path
) -> None:
    with support.database("postgresql", tmp_path, pg_template) as db_url:
        key = support.create_key(db_url)
        first = support.start_server(db_url, tmp_path)
        second = support.start_server(db_url, tmp_path)
        with support.processes_stopped(first, second):
            worker = support.start_worker(
                first, key, tmp_path, concurrency=2, api_url=f"{first.url},{second.url}"
            )
            client = Triggerfish(api_url=f"{first.url},{second.url}", secret_key=key)
            with support.processes_stopped(worker):
                try:
                    before = client.tasks.trigger("hello", {"who": "first"})
                    assert client.runs.poll(before.id, timeout=60).status == "COMPLETED"
                    marks = tmp_path / "marks"
                    running = client.tasks.trigger("blocks", {"marks": str(marks)})
                    support.wait_for(
                        lambda: (marks / "started-1").exists(), what="the attempt to start"
                    )
                    first.stop(signal.SIGKILL)
                    # the heartbeat timeout is 3 s: the worker must have moved to
                    # the second server well within it to keep its lease
                    (marks / "go").touch()
                    done = client.runs.poll(running.id, timeout=60, interval=0.05)
                    assert done.status == "COMPLETED", done
                    assert done.attempt_count == 1 and done.output["attempt"] == 1
                    after = [client.tasks.trigger("hello", {"who": f"w{i}"}) for i in range(5)]
                    for handle in after:
                        run = client.runs.poll(handle.id, timeout=60, interval=0.05)
                        assert run.status == "COMPLETED", run
                    assert client._transport.servers.current == second.url
                    assert worker.proc.poll() is None, worker.log.read_text()
                    assert f"trying {second.url}" in worker.log.read_text()
                finally:
                    client.close()


@contextlib.contextmanager
def _hung(server: support.ServerProc) -> Iterator[None]:
    """``server`` stopped (SIGSTOP: its connections stay open, nothing answers),
    then let go on (SIGCONT) so that it can be stopped at the end of the test."""
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def _rows(db_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """``query``'s rows, read from the database itself."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(db_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def _lease_of(db_url: str, run_id: str) -> tuple[int, float]:
    """The run's attempt count and when its lease runs out (epoch seconds), from the database."""
    query = "SELECT attempt_count, lease_expires_at FROM runs WHERE id = $1"
    [row] = _rows(db_url, query, run_id)
    return int(row["attempt_count"]), float(row["lease_expires_at"] or 0)


@contextlib.contextmanager
def _two_servers(
    pg_template: str, tmp_path: Path, heartbeat_timeout: float
) -> Iterator[tuple[str, support.ServerProc, support.ServerProc, support.WorkerProc, Triggerfish]]:
    """Two servers A and B on one PostgreSQL database, a worker given both (A
    first) and a client of B: ``(db_url, A, B, worker, client)``."""
    with support.database("postgresql", tmp_path, pg_template) as db_url:
        key = support.create_key(db_url)
        first = support.start_server(db_url, tmp_path, heartbeat_timeout=heartbeat_timeout)
        second = support.start_server(db_url, tmp_path, heartbeat_timeout=heartbeat_timeout)
        with support.processes_stopped(first, second):
            worker = support.start_worker(
                first, key, tmp_path, concurrency=2, api_url=f"{first.url},{second.url}"
            )
            client = Triggerfish(api_url=second.url, secret_key=key)
            with support.processes_stopped(worker), contextlib.closing(client):
                yield db_url, first, second, worker, client


def test_a_worker_keeps_its_lease_when_its_first_server_hangs(
    pg_template: str, tmp_path: Path
) -> None:
    """Server A hangs (SIGSTOP) while the worker runs an attempt longer than the
    heartbeat timeout: a heartbeat left unanswered moves the worker to B within a
    heartbeat interval, so the lease is renewed there before it runs out (no
    reclaim, one attempt), and the worker's long poll for work goes to B too."""
    timeout = 6.0  # the worker beats every 2 s
    with _two_servers(pg_template, tmp_path, timeout) as (db_url, first, second, worker, client):
        marks = tmp_path / "marks"
        running = client.tasks.trigger("blocks", {"marks": str(marks)})
        support.wait_for(lambda: (marks / "started-1").exists(), what="the attempt to start")
        with _hung(first):
            hung_at = time.time()

            # the lease held when A stopped runs out by hung_at + timeout; it
            # must have been renewed past that, through B, by the same attempt
            def renewed() -> bool:
                attempts, lease = _lease_of(db_url, running.id)
                return attempts == 1 and lease > hung_at + timeout + 1

            support.wait_for(
                renewed,
                timeout=30,
                interval=0.2,
                what="the lease to be renewed through the second server",
            )
            (marks / "go").touch()
            done = client.runs.poll(running.id, timeout=60, interval=0.05)
            assert done.status == "COMPLETED", done
            assert done.attempt_count == 1 and done.output["attempt"] == 1, done
            assert not (marks / "started-2").exists()
            # the worker long-polls B now, not A until its poll times out
            after = client.tasks.trigger("hello", {"who": "after"})
            run = client.runs.poll(after.id, timeout=10, interval=0.05)
            assert run.status == "COMPLETED", run
            assert worker.proc.poll() is None, worker.log.read_text()
            assert f"trying {second.url}" in worker.log.read_text()


def _journal_of(db_url: str, run_id: str) -> list[tuple[str, str]]:
    """The run's journal entries, ``(name, status)`` in order, from the database."""
    query = "SELECT name, status FROM run_journal WHERE run_id = $1 ORDER BY seq"
    return [(row["name"], row["status"]) for row in _rows(db_url, query, run_id)]


def test_a_task_s_own_journal_writes_follow_the_worker_when_its_first_server_hangs(
    pg_template: str, tmp_path: Path
) -> None:
    """Server A hangs (SIGSTOP) while a task journals step after step over its own
    link to A (``worker/_direct.py``): the worker moves to B and its task process's
    writes go along, instead of each waiting out its answer timeout on A again
    and again. One attempt, every step run and journaled once."""
    steps, pause = 12, 0.3
    with _two_servers(pg_template, tmp_path, heartbeat_timeout=6.0) as (
        db_url,
        first,
        second,
        worker,
        client,
    ):
        marks = tmp_path / "marks"
        payload = {"marks": str(marks), "steps": steps, "pause": pause}
        running = client.tasks.trigger("many-steps", payload)
        support.wait_for(
            lambda: (marks / "started-1").exists(), what="the first step to be journaled"
        )
        with _hung(first):
            hung_at = time.monotonic()
            (marks / "go").touch()
            done = client.runs.poll(running.id, timeout=120, interval=0.05)
            took = time.monotonic() - hung_at
        assert done.status == "COMPLETED", done
        assert done.attempt_count == 1 and done.output["attempt"] == 1, done
        assert done.output["results"] == list(range(1, steps + 1))
        names = [f"step-{i}" for i in range(1, steps + 1)]
        assert _journal_of(db_url, running.id) == [(n, "OK") for n in ["first", *names]]
        ran = [float((marks / n).read_text()) for n in names]  # one line: ran once
        # the first write waits while the worker leaves A (about two heartbeat
        # intervals, not the direct link's answer timeout of 10 s); then B
        # answers every write (a link tied to A stalled again each time it
        # tried A, every few seconds)
        gaps = [later - earlier for earlier, later in itertools.pairwise(ran)]
        assert gaps[0] < pause + 8 and max(gaps[1:]) < pause + 3, gaps
        assert took < steps * pause + 30, took
        assert f"trying {second.url}" in worker.log.read_text()


def _feed_after(db_url: str, run_id: str, after: int) -> list[int]:
    """The change feed's ids of ``run_id`` after position ``after``, from the database."""

    async def go() -> list[int]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch(
                "SELECT id FROM changes WHERE run_id = $1 AND id > $2 ORDER BY id", run_id, after
            )
            return [int(row["id"]) for row in rows]
        finally:
            await conn.close()

    return asyncio.run(go())


class _Subscriber:
    """Reads ``runs.subscribe`` (or its async form) of one run in a thread of its own."""

    def __init__(self, api_url: str, key: str, run_id: str, *, use_async: bool) -> None:
        self.client = Triggerfish(api_url=api_url, secret_key=key)
        self.got: list[RealtimeEvent] = []
        self.error: BaseException | None = None
        target = self._read_async if use_async else self._read
        self.thread = threading.Thread(target=self._catching, args=(target, run_id), daemon=True)
        self.thread.start()

    def _catching(self, read: Callable[[str], None], run_id: str) -> None:
        try:
            read(run_id)
        except BaseException as exc:  # handed to the test, which raises it
            self.error = exc

    def _read(self, run_id: str) -> None:
        try:
            self.got.extend(self.client.runs.subscribe(run_id))
        finally:
            self.client.close()

    def _read_async(self, run_id: str) -> None:
        async def go() -> None:
            try:
                async for event in self.client.runs.subscribe_async(run_id):
                    self.got.append(event)
            finally:
                await self.client.aclose()

        asyncio.run(go())

    def finished(self, timeout: float) -> list[RealtimeEvent]:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the subscription still runs: {self.got}"
        if self.error is not None:
            raise self.error
        return self.got


def test_a_subscription_goes_on_through_the_second_server_when_the_first_is_killed(
    pg_template: str, tmp_path: Path
) -> None:
    """``runs.subscribe`` (sync and async) through server A; A is killed mid-run: both
    subscriptions resume on B from their last event and end at COMPLETED, having
    seen each change of the run's feed once."""
    with support.database("postgresql", tmp_path, pg_template) as db_url:
        key = support.create_key(db_url)
        first = support.start_server(db_url, tmp_path)
        second = support.start_server(db_url, tmp_path)
        both = f"{first.url},{second.url}"
        with support.processes_stopped(first, second):
            worker = support.start_worker(first, key, tmp_path, concurrency=1, api_url=both)
            client = Triggerfish(api_url=both, secret_key=key)
            with support.processes_stopped(worker):
                try:
                    marks = tmp_path / "marks"
                    handle = client.tasks.trigger("blocks", {"marks": str(marks)})
                    support.wait_for(
                        lambda: (marks / "started-1").exists(), what="the attempt to start"
                    )
                    readers = [
                        _Subscriber(both, key, handle.id, use_async=use_async)
                        for use_async in (False, True)
                    ]
                    support.wait_for(lambda: all(r.got for r in readers), what="both snapshots")
                    client.runs.update_metadata(handle.id, {"step": "before"})
                    support.wait_for(
                        lambda: all(_has_step(r.got, "before") for r in readers),
                        what="both subscriptions to be live on the first server",
                    )
                    first.stop(signal.SIGKILL)
                    client.runs.update_metadata(handle.id, {"step": "after"})
                    (marks / "go").touch()
                    for reader in readers:
                        got = reader.finished(60)
                        assert got[0].kind == "snapshot" and got[-1].status == "COMPLETED", got
                        assert _has_step(got, "after")
                        ids = [event.id for event in got[1:]]
                        assert ids == _feed_after(db_url, handle.id, got[0].id)
                        assert reader.client._transport.servers.current == second.url
                finally:
                    client.close()


def _has_step(got: list[RealtimeEvent], step: str) -> bool:
    return any(e.kind == "metadata" and e.data["metadata"].get("step") == step for e in list(got))
