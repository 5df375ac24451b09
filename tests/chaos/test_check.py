"""The chaos suite's checker, on synthetic side-effect rows: it must name each violation."""

from __future__ import annotations

import itertools

from chaos.check import (
    CUT_OFF,
    AttemptView,
    FaultRecord,
    RunView,
    Triggered,
    check,
    render,
)
from chaos.effects import Effect

_ids = itertools.count()


def _row(
    kind: str, key: str, run: str, attempt: str, at: float, step: str = "", pid: int = 100
) -> Effect:
    number = int(attempt.rsplit("-", 1)[1])
    return Effect(f"e{next(_ids)}", key, run, attempt, number, kind, step, pid, 10, at)


def _attempt(id_: str, status: str, start: float, end: float) -> AttemptView:
    return AttemptView(id_, int(id_.rsplit("-", 1)[1]), status, start, end)


def _clean_run(key: str, run: str, t: float) -> tuple[RunView, list[Effect]]:
    """A run that did everything once: start, two journaled steps, end."""
    rows = [
        _row("start", key, run, f"{run}-1", t),
        _row("step", key, run, f"{run}-1", t + 1, "s0"),
        _row("step", key, run, f"{run}-1", t + 2, "s1"),
        _row("end", key, run, f"{run}-1", t + 3),
    ]
    output = {"key": key, "effects": {"s0": rows[1].effect_id, "s1": rows[2].effect_id}}
    return RunView(run, "COMPLETED", output, (_attempt(f"{run}-1", "COMPLETED", t, t + 3),)), rows


def test_a_clean_history_passes() -> None:
    run, rows = _clean_run("k1", "r1", 100.0)
    report = check([Triggered("k1", "chaos-steps", 99.0, {"r1"})], {"r1": run}, rows, [])
    assert report.ok, render(report)
    assert report.runs == 1 and report.effects == 4


def test_a_duplicate_and_a_lost_run_are_reported() -> None:
    ok, ok_rows = _clean_run("k1", "r1", 100.0)
    # k2: two runs for one key (the second trigger answered another run, which ran)
    dup_a, dup_a_rows = _clean_run("k2", "r2a", 110.0)
    dup_b, dup_b_rows = _clean_run("k2", "r2b", 111.0)
    # k3: triggered, its run never finished
    lost = RunView("r3", "EXECUTING", None, (_attempt("r3-1", "EXECUTING", 120.0, 0.0),))
    lost_rows = [_row("start", "k3", "r3", "r3-1", 120.0)]
    # k4: triggered, no run ever wrote anything and the API does not know the id
    triggered = [
        Triggered("k1", "chaos-steps", 99.0, {"r1"}),
        Triggered("k2", "chaos-steps", 109.0, {"r2a", "r2b"}),
        Triggered("k3", "chaos-steps", 119.0, {"r3"}),
        Triggered("k4", "chaos-steps", 130.0, set()),
    ]
    runs = {r.id: r for r in (ok, dup_a, dup_b, lost)}
    report = check(triggered, runs, ok_rows + dup_a_rows + dup_b_rows + lost_rows, [])
    assert not report.ok
    assert [(f.kind, f.key) for f in report.findings] == [
        ("duplicated", "k2"),
        ("lost", "k3"),
        ("lost", "k4"),
    ]
    table = render(report)
    assert "2 violations" not in table and "3 violations" in table


def test_a_step_that_ran_again_after_its_result_was_journaled_is_reported() -> None:
    run, rows = _clean_run("k1", "r1", 100.0)
    # a second attempt ran s0 again although the first one's s0 result is journaled
    again = _row("step", "k1", "r1", "r1-2", 105.0, "s0", pid=101)
    run = RunView(
        run.id,
        run.status,
        run.output,
        (*run.attempts, _attempt("r1-2", "COMPLETED", 104.0, 106.0)),
    )
    report = check([Triggered("k1", "chaos-steps", 99.0, {"r1"})], {"r1": run}, [*rows, again], [])
    assert [f.kind for f in report.findings] == ["re-run step"]
    assert "after the journaled one" in report.findings[0].detail


def _crashed_then_redone(pid: int) -> tuple[RunView, list[Effect]]:
    """Attempt 1 ran s0 (not journaled) and crashed; attempt 2 ran s0 and s1."""
    a1 = [_row("start", "k1", "r1", "r1-1", 100.0, pid=pid)]
    a1.append(_row("step", "k1", "r1", "r1-1", 101.0, "s0", pid=pid))
    a2 = [
        _row("start", "k1", "r1", "r1-2", 110.0, pid=200),
        _row("step", "k1", "r1", "r1-2", 111.0, "s0", pid=200),
        _row("step", "k1", "r1", "r1-2", 112.0, "s1", pid=200),
        _row("end", "k1", "r1", "r1-2", 113.0, pid=200),
    ]
    output = {"key": "k1", "effects": {"s0": a2[1].effect_id, "s1": a2[2].effect_id}}
    attempts = (
        _attempt("r1-1", "CRASHED", 100.0, 108.0),
        _attempt("r1-2", "COMPLETED", 110.0, 113.0),
    )
    return RunView("r1", "COMPLETED", output, attempts), a1 + a2


def test_work_of_a_killed_process_may_be_redone() -> None:
    run, rows = _crashed_then_redone(pid=150)
    fault = FaultRecord("kill -9 task process", 101.5, ended_pids={150})
    report = check([Triggered("k1", "chaos-steps", 99.0, {"r1"})], {"r1": run}, rows, [fault])
    assert report.ok, render(report)
    assert report.rows[1].retried == 1


def test_work_of_a_healthy_process_redone_is_reported() -> None:
    run, rows = _crashed_then_redone(pid=150)
    fault = FaultRecord("kill -9 PostgreSQL", 101.5, ended_pids={999})
    report = check([Triggered("k1", "chaos-steps", 99.0, {"r1"})], {"r1": run}, rows, [fault])
    assert sorted(f.kind for f in report.findings) == ["re-run step", "redone"]
    # both counted against the fault during which the attempt was lost
    assert report.rows[1].counts["redone"] == 1 and report.rows[0].counts["redone"] == 0


def test_work_lost_while_a_worker_could_reach_no_server_is_counted_apart() -> None:
    run, rows = _crashed_then_redone(pid=150)
    fault = FaultRecord("kill -9 server 0", 101.5, cut_off={10}, cut_off_until=120.0)
    report = check([Triggered("k1", "chaos-steps", 99.0, {"r1"})], {"r1": run}, rows, [fault])
    assert report.ok
    assert report.total(CUT_OFF) == 2


def test_a_cut_off_worker_running_a_step_after_its_successor_is_counted_apart() -> None:
    run, rows = _crashed_then_redone(pid=150)
    # the cut-off attempt ran s1 after attempt 2 had journaled it (it learned of the
    # reclaim only when it reached a server again)
    late = _row("step", "k1", "r1", "r1-1", 115.0, "s1", pid=150)
    fault = FaultRecord("kill -9 server 0", 101.5, cut_off={10}, cut_off_until=120.0)
    triggered = [Triggered("k1", "chaos-steps", 99.0, {"r1"})]
    assert check(triggered, {"r1": run}, [*rows, late], [fault]).ok
    # with failover (no worker cut off) the same history is a violation
    report = check(triggered, {"r1": run}, [*rows, late], [FaultRecord("kill -9 server 0", 101.5)])
    assert "re-run step" in {f.kind for f in report.findings}
