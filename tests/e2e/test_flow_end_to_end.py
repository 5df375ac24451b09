"""Flow control with real processes: one server and two workers on PostgreSQL.

A shared queue limit holds across both workers (sampled while runs execute), a
paused queue starts nothing, a late concurrency key is served before an earlier
key's backlog drains, delayed / expired / rescheduled / canceled-while-executing
/ replayed runs behave, metadata set inside a task reaches the run, a batch
completes, and identical triggers from parallel processes make one run.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.support import Stack
from triggerfish import Triggerfish

FINAL = {"COMPLETED", "FAILED", "CANCELED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT"}


@pytest.fixture(scope="module")
def pg_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("flow-pg")
    template = request.getfixturevalue("pg_template")
    workers = [{"concurrency": 3, "name": f"w{i}"} for i in range(2)]
    with support.open_stack("postgresql", folder, template, workers=workers) as stack:
        yield stack


def statuses(client: Triggerfish, ids: list[str]) -> dict[str, str]:
    return {i: client.runs.retrieve(i).status for i in ids}


#: runs seen in a final status (it never changes again): a poll asks only about the rest,
#: and stops at the first that is not final, so waiting on a backlog adds little load
_seen_final: set[str] = set()


def all_final(client: Triggerfish, ids: list[str]) -> bool:
    for run_id in ids:
        if run_id not in _seen_final:
            if client.runs.retrieve(run_id).status not in FINAL:
                return False
            _seen_final.add(run_id)
    return True


def test_a_shared_limit_of_two_never_has_three_running(pg_stack: Stack, tmp_path: Path) -> None:
    c = pg_stack.client
    marks = str(tmp_path / "marks")
    ids = [
        c.tasks.trigger(task, {"marks": marks, "seconds": 0.4}).id
        for task in ["flow-limited", "flow-limited-too"] * 4
    ]
    peak = 0
    deadline = time.monotonic() + 60
    while not all_final(c, ids):
        # one count in the store per sample, so the sample is consistent
        running = c.queues.retrieve("e2e-limited").running
        peak = max(peak, running)
        assert running <= 2, f"{running} running, limit 2"
        assert time.monotonic() < deadline, "runs did not finish"
    # and from the task processes' own clocks: never three bodies at once
    spans = []
    for run_id in ids:
        start = float((Path(marks) / f"start-{run_id}").read_text().split()[1])
        end = float((Path(marks) / f"end-{run_id}").read_text().split()[1])
        spans.append((start, end))
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert overlap <= 2, f"{overlap} runs executed at once"
    assert max(peak, overlap) == 2, "the limit was never reached: the test proved nothing"
    assert all(c.runs.retrieve(i).status == "COMPLETED" for i in ids)


def test_a_paused_queue_starts_nothing_until_resumed(pg_stack: Stack, tmp_path: Path) -> None:
    c = pg_stack.client
    c.queues.pause("e2e-limited")
    try:
        ids = [c.tasks.trigger("flow-limited", {"marks": str(tmp_path)}).id for _ in range(3)]
        support.wait_for(
            lambda: all(
                (r := c.runs.retrieve(i)).wait_reason and r.wait_reason.code == "QUEUE_PAUSED"
                for i in ids
            ),
            what="paused reason",
        )
        # both workers poll and are woken by the triggers; nothing may start
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            assert set(statuses(c, ids).values()) == {"QUEUED"}
            time.sleep(0.1)
        assert c.queues.retrieve("e2e-limited").queued == 3
    finally:
        c.queues.resume("e2e-limited")
    support.wait_for(lambda: all_final(c, ids), timeout=30, what="runs after resume")


def test_a_late_key_finishes_before_an_earlier_backlog(pg_stack: Stack) -> None:
    c = pg_stack.client

    def items(key: str, n: int) -> list[dict[str, Any]]:
        return [
            {"task": "flow-keyed", "payload": {"key": key}, "options": {"concurrency_key": key}}
            for _ in range(n)
        ]

    a = c.tasks.batch_trigger(items("A", 40)).run_ids
    b = c.tasks.batch_trigger(items("B", 3)).run_ids
    support.wait_for(lambda: all_final(c, a + b), timeout=90, what="all runs")
    b_runs = [c.runs.retrieve(i) for i in b]
    b_queued = min(r.created_at for r in b_runs)
    b_done = max(r.finished_at for r in b_runs)  # type: ignore[type-var]
    a_runs = [c.runs.retrieve(i) for i in a]
    between = sum(1 for r in a_runs if b_queued < r.finished_at < b_done)  # type: ignore[operator, misc]
    # the queue runs one at a time: served fairly, A and B alternate once B arrives;
    # in FIFO order every A run still waiting would come first
    left_when_b_arrived = sum(1 for r in a_runs if r.finished_at > b_queued)  # type: ignore[operator, misc]
    assert left_when_b_arrived >= 20, "A's backlog was gone before B arrived: proves nothing"
    assert between <= 6, f"{between} A runs finished between B's arrival and B's last finish"


def test_delayed_expired_and_rescheduled_runs(pg_stack: Stack) -> None:
    c = pg_stack.client
    delayed = c.tasks.trigger("flow-keyed", {"key": "d"}, delay="1s").id
    assert c.runs.retrieve(delayed).status == "DELAYED"
    assert c.runs.retrieve(delayed).wait_reason.code == "DELAYED"  # type: ignore[union-attr]
    later = c.tasks.trigger("flow-keyed", {"key": "r"}, delay="1h").id
    moved = c.runs.reschedule(later, "1s")
    assert moved.status == "DELAYED"
    c.queues.pause("e2e-keyed")
    try:
        doomed = c.tasks.trigger("flow-keyed", {"key": "x"}, ttl="1s").id
        support.wait_for(
            lambda: c.runs.retrieve(doomed).status == "EXPIRED", timeout=20, what="expiry"
        )
    finally:
        c.queues.resume("e2e-keyed")
    support.wait_for(lambda: all_final(c, [delayed, later]), timeout=30, what="delayed runs")
    assert statuses(c, [delayed, later]) == {delayed: "COMPLETED", later: "COMPLETED"}


def test_cancel_while_executing_stops_the_process(pg_stack: Stack, tmp_path: Path) -> None:
    c = pg_stack.client
    run_id = c.tasks.trigger("flow-forever", {"marks": str(tmp_path)}).id
    marker = tmp_path / f"pid-{run_id}"
    support.wait_for(marker.exists, timeout=30, what="the run to start")
    pid = int(marker.read_text().split()[0])
    started = time.monotonic()
    c.runs.cancel(run_id)
    support.wait_for(lambda: not support.pid_alive(pid), timeout=15, what="the process to stop")
    assert time.monotonic() - started < 10
    run = c.runs.retrieve(run_id)
    assert run.status == "CANCELED" and run.attempts[-1].status == "CANCELED"


def test_replay_and_metadata_from_inside_a_task(pg_stack: Stack) -> None:
    c = pg_stack.client
    original = c.tasks.trigger("flow-meta", {"n": 1}, tags=["meta"]).id
    run = c.runs.poll(original, timeout=30)
    expected = {"progress": 0.5, "steps": ["render"], "tokens": 30}
    assert run.status == "COMPLETED" and run.output == expected
    support.wait_for(lambda: c.runs.metadata(original) == expected, what="metadata")
    replay = c.runs.replay(original).id
    again = c.runs.poll(replay, timeout=30)
    assert again.replayed_from_run_id == original and again.payload == {"n": 1}
    assert again.tags == ["meta"]
    listed = c.runs.list(tag="meta", limit=10)
    assert {r.id for r in listed.data} >= {original, replay}


def test_batch_trigger_completes(pg_stack: Stack) -> None:
    c = pg_stack.client
    batch = c.tasks.batch_trigger(
        [{"task": "flow-keyed", "payload": {"key": i, "seconds": 0}} for i in range(30)]
    )
    assert len(batch.run_ids) == 30
    support.wait_for(
        lambda: c.batches.retrieve(batch.id).status == "COMPLETED", timeout=60, what="batch"
    )
    page = c.runs.list(batch=batch.id, limit=100)
    assert sorted(r.id for r in page.data) == sorted(batch.run_ids)


def _trigger_same_key(args: tuple[str, str, str]) -> str:
    url, key, idem = args
    with_client = Triggerfish(api_url=url, secret_key=key)
    try:
        return with_client.tasks.trigger("flow-keyed", {"key": "i"}, idempotency_key=idem).id
    finally:
        with_client.close()


def test_identical_triggers_from_parallel_processes_make_one_run(pg_stack: Stack) -> None:
    args: list[Any] = [(pg_stack.server.url, pg_stack.key, "same-key")] * 12
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        ids = pool.map(_trigger_same_key, args)
    assert len(set(ids)) == 1
    page = pg_stack.client.runs.list(task="flow-keyed", limit=100)
    assert sum(1 for r in page.data if r.id == ids[0]) == 1


def test_queue_commands_and_doctor(pg_stack: Stack) -> None:
    env = {
        "TRIGGERFISH_API_URL": pg_stack.server.url,
        "TRIGGERFISH_SECRET_KEY": pg_stack.key,
        "COLUMNS": "200",
    }
    paused = support.cli("queues", "pause", "e2e-keyed", env=env)
    assert paused.returncode == 0, paused.stderr
    assert "paused" in paused.stdout
    try:
        run_id = pg_stack.client.tasks.trigger("flow-keyed", {"key": "cli"}).id
        shown = support.cli("runs", "show", run_id, env=env)
        assert "queue 'e2e-keyed' is paused" in shown.stdout
        limited = support.cli("queues", "limit", "e2e-keyed", "3", env=env)
        assert limited.returncode == 0 and " 3 " in limited.stdout
        reset = support.cli("queues", "limit", "e2e-keyed", "--reset", env=env)
        assert reset.returncode == 0 and " 1 " in reset.stdout
        rated = support.cli("queues", "rate-limit", "e2e-keyed", "100", "1m", env=env)
        assert rated.returncode == 0 and "100/60s" in rated.stdout
        assert support.cli("queues", "rate-limit", "e2e-keyed", env=env).returncode == 0
        assert "20" in support.cli("queues", "env-limit", "20", env=env).stdout
        doctor = support.cli("doctor", env=env)
        assert doctor.returncode == 0, doctor.stderr
        assert "e2e-keyed" in doctor.stdout and "paused" in doctor.stdout
        assert "Workers online" in doctor.stdout and "w0" in doctor.stdout
        assert "limit 20" in doctor.stdout
        listed = support.cli("queues", "list", env=env)
        assert "e2e-limited" in listed.stdout and "flow-meta" in listed.stdout
        bad = support.cli("queues", "pause", "no-such-queue", env=env)
        assert bad.returncode != 0 and "not found" in bad.stderr
    finally:
        support.cli("queues", "env-limit", "--unlimited", env=env)
        support.cli("queues", "resume", "e2e-keyed", env=env)
    support.wait_for(lambda: all_final(pg_stack.client, [run_id]), timeout=30, what="the run")
    later = pg_stack.client.tasks.trigger("flow-keyed", {"key": "r"}, delay="1h").id
    moved = support.cli("runs", "reschedule", later, "1s", env=env)
    assert moved.returncode == 0 and "now starts at" in moved.stdout
    support.wait_for(lambda: all_final(pg_stack.client, [later]), timeout=30, what="rescheduled")
