"""Workers dying, stopping and competing: nothing is lost, nothing runs twice."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests import support
from tests.support import Stack

both = pytest.mark.parametrize("fresh_stack", support.BACKENDS, indirect=True)


@both
def test_sigkill_of_a_worker_mid_run_completes_on_another(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    first = fresh_stack.worker(concurrency=1, name="first")
    marks = tmp_path / "marks"
    handle = fresh_stack.client.tasks.trigger("blocks", {"marks": str(marks)})
    support.wait_for(lambda: (marks / "started-1").exists(), what="attempt 1 to start")
    second = fresh_stack.worker(concurrency=1, name="second")
    with support.processes_stopped(first, second):
        task_processes = first.kill_hard()
        (marks / "go").touch()
        run = fresh_stack.client.runs.poll(handle.id, timeout=60, interval=0.1)
        assert run.status == "COMPLETED" and run.output["attempt"] == 2
        assert [a.status for a in run.attempts] == ["CRASHED", "COMPLETED"]
        assert run.attempts[0].error and "heartbeats" in run.attempts[0].error.message
        support.wait_for(
            lambda: not any(support.pid_alive(p) for p in task_processes),
            what="the killed worker's task processes to be gone",
        )


@both
def test_sigterm_lets_running_attempts_finish(fresh_stack: Stack, tmp_path: Path) -> None:
    worker = fresh_stack.worker(concurrency=2, grace=60)
    marks = tmp_path / "marks"
    handle = fresh_stack.client.tasks.trigger("blocks", {"marks": str(marks)})
    support.wait_for(lambda: (marks / "started-1").exists(), what="attempt to start")
    with support.processes_stopped(worker):
        worker.proc.send_signal(signal.SIGTERM)
        # the signal is handled by the worker's event loop: once it says it is
        # draining, it has stopped claiming
        support.wait_for(
            lambda: "waiting up to" in worker.log.read_text(), what="the worker to start draining"
        )
        queued_meanwhile = fresh_stack.client.tasks.trigger("hello", {})
        (marks / "go").touch()
        assert worker.proc.wait(60) == 0
        run = fresh_stack.client.runs.retrieve(handle.id)
        assert run.status == "COMPLETED" and run.attempt_count == 1
        # a stopping worker takes no new work: the later run waits for the next worker
        assert fresh_stack.client.runs.retrieve(queued_meanwhile.id).status == "QUEUED"
        later = fresh_stack.worker(concurrency=1, name="later")
        with support.processes_stopped(later):
            done = fresh_stack.client.runs.poll(queued_meanwhile.id, timeout=30, interval=0.05)
            assert done.status == "COMPLETED"


@both
def test_sigterm_past_the_grace_period_releases_runs_without_losing_them(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    worker = fresh_stack.worker(concurrency=1, grace=0.5)
    marks = tmp_path / "marks"
    handle = fresh_stack.client.tasks.trigger("blocks", {"marks": str(marks), "max_wait": 120})
    support.wait_for(lambda: (marks / "started-1").exists(), what="attempt to start")
    with support.processes_stopped(worker):
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(30) == 0
    assert fresh_stack.client.runs.retrieve(handle.id).status == "QUEUED"
    (marks / "go").touch()
    successor = fresh_stack.worker(concurrency=1, name="successor")
    with support.processes_stopped(successor):
        run = fresh_stack.client.runs.poll(handle.id, timeout=60, interval=0.05)
    assert run.status == "COMPLETED" and run.output["attempt"] == 2
    assert [a.status for a in run.attempts] == ["RELEASED", "COMPLETED"]
    assert not (marks / "finished").read_text().count("\n") > 1


@pytest.mark.parametrize("fresh_stack", ["postgresql"], indirect=True)
def test_two_workers_on_postgresql_never_run_the_same_attempt_twice(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    workers = [fresh_stack.worker(concurrency=4, name=f"w{i}") for i in range(2)]
    marks = tmp_path / "marks"
    with support.processes_stopped(*workers):
        handles = [
            fresh_stack.client.tasks.trigger("counts", {"marks": str(marks)}) for _ in range(120)
        ]
        runs = [fresh_stack.client.runs.poll(h.id, timeout=120, interval=0.05) for h in handles]
    assert {r.status for r in runs} == {"COMPLETED"}
    assert all(r.attempt_count == 1 for r in runs)
    for handle in handles:
        lines = (marks / f"ran-{handle.id}").read_text().splitlines()
        assert len(lines) == 1, f"{handle.id} ran {len(lines)} times"
    # both workers took part
    pids = {(marks / f"ran-{h.id}").read_text().strip() for h in handles}
    assert len(pids) >= 2


@pytest.mark.parametrize("fresh_stack", ["postgresql"], indirect=True)
def test_a_run_triggered_on_one_server_wakes_a_worker_polling_another(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    """LISTEN/NOTIFY between servers: no polling interval between trigger and start."""
    other = support.start_server(
        fresh_stack.server.db_url, tmp_path, extra_env={"TRIGGERFISH_MAINTENANCE_INTERVAL": "30"}
    )
    worker = support.start_worker(other, fresh_stack.key, tmp_path, concurrency=1)
    with support.processes_stopped(worker, other):
        for _ in range(5):
            handle = fresh_stack.client.tasks.trigger("hello", {})
            run = fresh_stack.client.runs.poll(handle.id, timeout=10, interval=0.02)
            assert run.status == "COMPLETED"
            assert run.started_at and (run.started_at - run.created_at).total_seconds() < 2


def test_a_worker_busy_with_long_runs_leaves_the_next_ones_to_others(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    first = fresh_stack.worker(concurrency=1, name="first")
    with support.processes_stopped(first):
        # one run of over a second: the worker learns its runs are long
        long = fresh_stack.client.tasks.trigger(
            "blocks", {"marks": str(tmp_path / "long"), "max_wait": 1.2}
        )
        assert fresh_stack.client.runs.poll(long.id, timeout=30, interval=0.05).status == (
            "COMPLETED"
        )
        marks = [tmp_path / "a", tmp_path / "b"]
        handles = [
            fresh_stack.client.tasks.trigger("blocks", {"marks": str(m), "max_wait": 60})
            for m in marks
        ]
        support.wait_for(
            lambda: any((m / "started-1").exists() for m in marks), what="the first to start"
        )
        # the busy worker claimed nothing ahead: a worker that joins takes the other run
        second = fresh_stack.worker(concurrency=1, name="second")
        with support.processes_stopped(second):
            support.wait_for(
                lambda: all((m / "started-1").exists() for m in marks),
                timeout=30,
                what="both runs running at once, one on each worker",
            )
            for m in marks:
                (m / "go").touch()
            runs = [fresh_stack.client.runs.poll(h.id, timeout=30, interval=0.05) for h in handles]
    assert {r.status for r in runs} == {"COMPLETED"}
    assert len({r.output["pid"] for r in runs}) == 2


def _terminate_connections(db_url: str) -> list[int]:
    """End every connection to the database from PostgreSQL's side, as a restart
    would; once their backends are gone, return their pids."""
    import asyncio

    import asyncpg

    name = db_url.rsplit("/", 1)[1]

    async def go() -> list[int]:
        conn = await asyncpg.connect(support.PG_ADMIN_URL)
        try:
            pids = await conn.fetch(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            ended = [row["pid"] for row in pids]

            async def all_gone() -> bool:
                left = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", ended
                )
                return int(left) == 0

            await support.wait_for_async(all_gone, 30, what="the backends to end")
            return ended
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.mark.parametrize("fresh_stack", ["postgresql"], indirect=True)
def test_postgresql_dropping_every_connection_loses_and_repeats_nothing(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    """The server replaces the connections PostgreSQL closed (a restart) without
    failing a call. SQLite has no connections to lose."""
    worker = fresh_stack.worker(concurrency=2)
    marks = tmp_path / "marks"
    with support.processes_stopped(worker):
        blocked = fresh_stack.client.tasks.trigger("blocks", {"marks": str(marks)})
        support.wait_for(lambda: (marks / "started-1").exists(), what="the attempt to start")
        # the server's pool, its held connections and its LISTEN connection at least
        assert len(_terminate_connections(fresh_stack.server.db_url)) >= 3
        later = [fresh_stack.client.tasks.trigger("hello", {"who": str(i)}) for i in range(20)]
        (marks / "go").touch()
        for handle in [blocked, *later]:
            run = fresh_stack.client.runs.poll(handle.id, timeout=60, interval=0.05)
            assert run.status == "COMPLETED" and run.attempt_count == 1
