"""The verdict: the side-effect table against the runs, fault by fault.

Four properties, each from the independent table (``effects.py``) and the
runs' final state as the API reports it:

- **nothing lost**: every key the suite triggered (and every child key a
  completed parent waited on) has a ``COMPLETED`` run, and every step result
  in its output (an effect id, journaled) has its side-effect row;
- **nothing duplicated**: one run per idempotency key, both in what the
  triggers answered and in the run ids that wrote rows for that key;
- **no journaled step re-ran**: a step has exactly one side-effect row, the
  journaled one, except rows from an attempt whose process the suite killed
  and that started before the journaled execution (it died before its result
  reached the journal);
- **no healthy worker's finished work was redone**: an attempt that did work
  (it wrote a row) and ended ``CRASHED``, ``FAILED``, ``TIMED_OUT`` or
  ``RELEASED`` must have run in a process the suite killed or stopped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from chaos.effects import Effect

#: attempt statuses of an attempt that did not end its run's work normally
ABNORMAL = frozenset({"CRASHED", "FAILED", "TIMED_OUT", "RELEASED"})
KINDS = ("lost", "duplicated", "re-run step", "redone")
#: counted in the table, not violations: work a worker lost while it could reach no server
CUT_OFF = "cut off"


@dataclass(frozen=True)
class AttemptView:
    id: str
    number: int
    status: str
    started_at: float | None
    finished_at: float | None
    error: str = ""


@dataclass(frozen=True)
class RunView:
    id: str
    status: str
    output: Any
    attempts: tuple[AttemptView, ...] = ()


@dataclass
class Triggered:
    """One idempotency key the suite triggered, and the run ids its triggers answered."""

    key: str
    task: str
    at: float
    run_ids: set[str] = field(default_factory=set)


@dataclass
class FaultRecord:
    """One injected fault, as ``faults.py`` performed it."""

    name: str
    at: float
    #: when the replacement process was started (or the outage ended)
    restarted_at: float | None = None
    #: seconds from the restart until runs progressed again on what was restarted
    recovery: float | None = None
    #: pids the fault ended (killed or stopped): their attempts may be redone
    ended_pids: set[int] = field(default_factory=set)
    #: workers left without a server (theirs was killed; they know one URL) ...
    cut_off: set[int] = field(default_factory=set)
    #: ... until then: attempts they lose meanwhile are counted, not violations
    cut_off_until: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class Finding:
    kind: str
    at: float
    key: str
    run_id: str
    detail: str


@dataclass
class Row:
    """A line of the table: one fault (or the time before the first)."""

    name: str
    recovery: float | None
    in_flight: int
    retried: int
    counts: dict[str, int]


@dataclass
class Report:
    findings: list[Finding]
    rows: list[Row]
    runs: int
    effects: int

    @property
    def violations(self) -> list[Finding]:
        return [f for f in self.findings if f.kind != CUT_OFF]

    @property
    def ok(self) -> bool:
        return not self.violations

    def total(self, kind: str) -> int:
        return sum(1 for f in self.findings if f.kind == kind)


def check(
    triggered: list[Triggered],
    runs: dict[str, RunView],
    effects: list[Effect],
    faults: list[FaultRecord],
) -> Report:
    """Every violation of the four properties, and the table by fault."""
    findings: list[Finding] = []
    ended: set[int] = set().union(*(f.ended_pids for f in faults)) if faults else set()
    by_key: dict[str, list[Effect]] = defaultdict(list)
    by_run: dict[str, list[Effect]] = defaultdict(list)
    for e in effects:
        by_key[e.key].append(e)
        by_run[e.run_id].append(e)

    cut = _cut_off_attempts(runs, by_run, faults)
    expected = list(triggered)
    for t in triggered:
        run = next((runs[r] for r in t.run_ids if r in runs), None)
        child = _output(run).get("child") if run is not None else None
        if isinstance(child, dict) and "key" in child:
            expected.append(Triggered(child["key"], "chaos-child", t.at))

    for t in expected:
        ids = set(t.run_ids) | {e.run_id for e in by_key.get(t.key, [])}
        last = max((e.at for e in by_key.get(t.key, [])), default=t.at)
        if len(ids) > 1:
            findings.append(
                Finding("duplicated", last, t.key, ",".join(sorted(ids)), f"{len(ids)} runs")
            )
        if not ids:
            findings.append(Finding("lost", last, t.key, "", "no run"))
            continue
        for run_id in sorted(ids):
            run = runs.get(run_id)
            if run is None or run.status != "COMPLETED":
                status = run.status if run else "unknown to the API"
                findings.append(Finding("lost", last, t.key, run_id, f"run {status}"))
                continue
            findings += _check_steps(t.key, run, by_run.get(run_id, []), ended, cut)

    findings += _check_attempts(runs, by_run, ended, cut)
    findings.sort(key=lambda f: f.at)
    return Report(findings, _rows(faults, findings, runs), len(runs), len(effects))


def _cut_off_attempts(
    runs: dict[str, RunView], by_run: dict[str, list[Effect]], faults: list[FaultRecord]
) -> set[str]:
    """Attempts that ended while their worker could reach no server."""
    out: set[str] = set()
    for run_id, run in runs.items():
        rows = by_run.get(run_id, [])
        for a in run.attempts:
            if a.status not in ABNORMAL or a.finished_at is None:
                continue
            workers = {e.worker_pid for e in rows if e.attempt_id == a.id}
            if any(
                workers & f.cut_off and f.at <= a.finished_at <= f.cut_off_until for f in faults
            ):
                out.add(a.id)
    return out


def _output(run: RunView | None) -> dict[str, Any]:
    return run.output if run is not None and isinstance(run.output, dict) else {}


def _check_steps(
    key: str, run: RunView, rows: list[Effect], ended: set[int], cut: set[str]
) -> list[Finding]:
    """Journaled step results against the step rows of one completed run."""
    out: list[Finding] = []
    journaled: dict[str, str] = dict(_output(run).get("effects") or {})
    steps: dict[str, list[Effect]] = defaultdict(list)
    for e in rows:
        if e.kind == "step":
            steps[e.step].append(e)
    by_id = {e.effect_id: e for e in rows}
    attempts = {a.id: a for a in run.attempts}
    for name, effect_id in journaled.items():
        j = by_id.get(effect_id)
        if j is None or j.step != name:
            at = max((e.at for e in rows), default=0.0)
            out.append(Finding("lost", at, key, run.id, f"step {name}: journaled, no row"))
            continue
        for x in steps.get(name, []):
            if x.effect_id == effect_id:
                continue
            lost = attempts.get(x.attempt_id)
            # counted when the attempt that ran it ended (its loss is the event)
            at = lost.finished_at if lost and lost.finished_at else x.at
            if x.attempt_id != j.attempt_id and x.attempt_id in cut:
                # before its successor's, or after it: a worker that cannot reach its
                # server learns of the reclaim only when it reaches one again
                out.append(Finding(CUT_OFF, at, key, run.id, f"step {name} ran again"))
                continue
            interrupted = (
                x.attempt_id != j.attempt_id
                and x.at < j.at
                and (x.pid in ended or x.worker_pid in ended)
            )
            if not interrupted:
                why = (
                    "after the journaled one"
                    if x.at >= j.at
                    else f"attempt {x.attempt} (pid {x.pid}) was not killed"
                )
                if lost is not None:
                    why += f"; it ended {lost.status}: {lost.error}"
                out.append(Finding("re-run step", at, key, run.id, f"step {name} ran again: {why}"))
    for name in steps.keys() - journaled.keys():
        out.append(
            Finding("re-run step", steps[name][-1].at, key, run.id, f"step {name}: not journaled")
        )
    return out


def _check_attempts(
    runs: dict[str, RunView], by_run: dict[str, list[Effect]], ended: set[int], cut: set[str]
) -> list[Finding]:
    """Attempts that did work and ended abnormally must have been killed or stopped."""
    out: list[Finding] = []
    for run_id, run in runs.items():
        rows = by_run.get(run_id, [])
        for attempt in run.attempts:
            if attempt.status not in ABNORMAL:
                continue
            mine = [e for e in rows if e.attempt_id == attempt.id]
            if not mine or any(e.pid in ended or e.worker_pid in ended for e in mine):
                continue
            at = attempt.finished_at or max(e.at for e in mine)
            key = mine[0].key
            last = max(mine, key=lambda e: e.at)
            done = (
                "its body had returned"
                if last.kind == "end"
                else f"last row {last.kind} {last.step}".rstrip() + f" at {last.at:.1f}"
            )
            detail = (
                f"attempt {attempt.number} {attempt.status} on pid {mine[0].pid} "
                f"(worker {mine[0].worker_pid}), which was never killed ({done}; "
                f"ended {attempt.finished_at or 0:.1f}): {attempt.error}"
            )
            out.append(Finding(CUT_OFF if attempt.id in cut else "redone", at, key, run_id, detail))
    return out


def _rows(
    faults: list[FaultRecord], findings: list[Finding], runs: dict[str, RunView]
) -> list[Row]:
    ordered = sorted(faults, key=lambda f: f.at)
    bounds = [f.at for f in ordered]

    def window(at: float) -> int:
        """0: before the first fault; i: during/after fault i."""
        return sum(1 for b in bounds if at >= b)

    counts: list[dict[str, int]] = [
        dict.fromkeys((*KINDS, CUT_OFF), 0) for _ in range(len(ordered) + 1)
    ]
    for f in findings:
        counts[window(f.at)][f.kind] += 1
    retried = [0] * (len(ordered) + 1)
    for run in runs.values():
        for a in run.attempts:
            if a.status in ABNORMAL and a.finished_at is not None:
                retried[window(a.finished_at)] += 1
    rows = [Row("no fault (before the first)", None, 0, retried[0], counts[0])]
    for i, fault in enumerate(ordered, start=1):
        in_flight = sum(
            1
            for run in runs.values()
            if any(
                a.started_at is not None
                and a.started_at <= fault.at
                and (a.finished_at is None or a.finished_at >= fault.at)
                for a in run.attempts
            )
        )
        rows.append(Row(fault.name, fault.recovery, in_flight, retried[i], counts[i]))
    return rows


def render(report: Report) -> str:
    """The table, then the first findings."""
    head = ["fault", "recovery s", "runs in flight", "attempts retried", *KINDS, CUT_OFF]
    lines = [
        [
            r.name,
            "-" if r.recovery is None else f"{r.recovery:.1f}",
            str(r.in_flight) if r.recovery is not None or r.in_flight else "-",
            str(r.retried),
            *(str(r.counts[k]) for k in (*KINDS, CUT_OFF)),
        ]
        for r in report.rows
    ]
    lines.append(
        [
            "total",
            "",
            "",
            str(sum(r.retried for r in report.rows)),
            *(str(report.total(k)) for k in (*KINDS, CUT_OFF)),
        ]
    )
    widths = [max(len(x[i]) for x in [head, *lines]) for i in range(len(head))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    out = [fmt(head), fmt(["-" * w for w in widths]), *(fmt(x) for x in lines)]
    out.append("")
    out.append(f"{report.runs} runs, {report.effects} side-effect rows checked")
    if report.total(CUT_OFF):
        out.append(
            f"{CUT_OFF}: {report.total(CUT_OFF)} attempts or steps redone because their worker "
            "could reach no server (each worker knows one URL); not counted as violations"
        )
    if report.violations:
        out.append(f"{len(report.violations)} violations; the first ones:")
        out += [f"  {f.kind}: {f.key} {f.run_id}: {f.detail}" for f in report.violations[:25]]
    else:
        out.append(
            "no violation: nothing lost, nothing duplicated, no journaled step re-ran, "
            "no healthy worker's work redone"
        )
    return "\n".join(out)
