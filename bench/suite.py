"""The comparative benchmark suite: every workload on Triggerfish and its peers,
in one run on one machine, with a results table and ``bench/RESULTS.md``.

    python -m bench                 # the issue's sizes, 3 repetitions
    python -m bench --quick         # small sizes, 1 repetition: a smoke run
    python -m bench --only W1,W2 --systems triggerfish-pg,celery --reps 5

See ``bench/README.md`` for what each workload times on each system.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import tf_workloads as tfw
from bench._bulk import fill_runs
from bench._common import (
    BENCH_DIR,
    REPO_DIR,
    BenchError,
    children_of,
    clean_env,
    median,
    rss_mb,
)
from bench._triggerfish import Stack, triggerfish_stack
from bench.floor import floor_lines, machine_floors

PEERS_VENV = BENCH_DIR / ".venv-peers"
PEERS_REQUIREMENTS = BENCH_DIR / "peers-requirements.txt"
RESULTS = BENCH_DIR / "RESULTS.md"

SYSTEMS = {
    "triggerfish-pg": "Triggerfish, PostgreSQL (server + worker, 2 slots)",
    "triggerfish-sqlite": "Triggerfish, SQLite (dev shape, 2 slots)",
    "celery": "Celery 5, Redis broker+backend (prefork, concurrency 2)",
    "dbos-inprocess": "DBOS Transact, PostgreSQL, in-process",
    "dbos-queue": "DBOS Transact, PostgreSQL, queue (2 worker procs)",
    "procrastinate": "Procrastinate, PostgreSQL (2 worker procs)",
}
REFERENCE = "triggerfish-pg"


@dataclass
class Sizes:
    w1: int = 5000
    w1_batch: int = 500
    w2: int = 200
    w3: int = 500
    w4: int = 100
    w5_rows: int = 1_000_000
    w5_samples: int = 50

    @classmethod
    def quick(cls) -> Sizes:
        return cls(w1=300, w1_batch=100, w2=30, w3=30, w4=10, w5_rows=20_000, w5_samples=10)


@dataclass
class Metric:
    """One figure of one workload on one system, over the repetitions."""

    workload: str
    name: str
    system: str
    unit: str
    higher_is_better: bool
    values: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.workload, self.name)


class Results:
    def __init__(self) -> None:
        self.metrics: dict[tuple[str, str, str], Metric] = {}
        self.unavailable: list[tuple[str, str, str]] = []  # workload, system, why
        self.failures: list[tuple[str, str, str]] = []
        #: bench.floor's round trips (ms: back to back, at idle), measured before the workloads
        self.floors: dict[str, tuple[float, float]] = {}

    def add(
        self, workload: str, name: str, system: str, unit: str, higher: bool, value: float
    ) -> None:
        key = (workload, name, system)
        if key not in self.metrics:
            self.metrics[key] = Metric(workload, name, system, unit, higher)
        self.metrics[key].values.append(value)

    def get(self, workload: str, name: str, system: str) -> Metric | None:
        return self.metrics.get((workload, name, system))


# -- the peers' virtualenv -------------------------------------------------------------


def ensure_peers_venv() -> Path:
    """Create ``bench/.venv-peers`` with the peers' packages (once); return its python."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".requirements"
    wanted = PEERS_REQUIREMENTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"installing the peers into {PEERS_VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(PEERS_REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def peer_versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
        "['celery', 'redis', 'dbos', 'procrastinate', 'psycopg']}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def run_peer(python: Path, module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run one measurement of a peer in the peers' venv; its last ``RESULT`` line is the answer."""
    with tempfile.TemporaryDirectory(prefix="tf-bench-peer-") as folder:
        try:
            out = subprocess.run(
                [str(python), "-m", f"bench.peers.{module}", *args, "--folder", folder],
                cwd=REPO_DIR,
                env=clean_env({"PYTHONPATH": str(REPO_DIR)}),
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"{module} {' '.join(args)} took longer than {timeout:.0f}s") from None
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        tail = (out.stdout + out.stderr)[-1500:]
        raise BenchError(f"{module} {' '.join(args)} failed ({out.returncode}):\n{tail}")
    return dict(json.loads(lines[-1].removeprefix("RESULT ")))


# -- Triggerfish measurements ----------------------------------------------------------


def _backend(system: str) -> str:
    return "postgresql" if system == "triggerfish-pg" else "sqlite"


def _warm(stack: Stack, count: int = 20) -> str:
    """Run ``count`` no-op runs so both task processes are warm; return the last run's id."""
    client = tfw.client_for(stack)
    try:
        handles = [client.tasks.trigger("noop", {"i": -1}) for _ in range(count)]
        tfw.wait_all_finished(client, count, 60)
        return handles[-1].id
    finally:
        client.close()


def _task_children(pid: int) -> list[int]:
    kids = []
    for kid in children_of(pid):
        try:
            cmd = Path(f"/proc/{kid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmd:
            kids.append(kid)
    return kids


def tf_measure(workload: str, system: str, sizes: Sizes, res: Results) -> None:
    backend = _backend(system)
    with triggerfish_stack(backend) as stack:
        _warm(stack)
        if workload == "W1":
            res.add(
                "W1",
                "one by one",
                system,
                "runs/s",
                True,
                tfw.throughput_one_by_one(stack, sizes.w1),
            )
        elif workload == "W1b":
            rate = tfw.throughput_batched(stack, sizes.w1, sizes.w1_batch)
            if rate is None:
                raise NotAvailable("this server has no batch trigger endpoint")
            res.add("W1", f"batched ({sizes.w1_batch}/request)", system, "runs/s", True, rate)
        elif workload == "W2":
            lat = tfw.latency_at_idle(stack, sizes.w2)
            for p in ("p50", "p95", "p99"):
                res.add("W2", f"trigger->start {p}", system, "ms", False, lat[p])
        elif workload == "W3":
            if not tfw.durable_available(stack):
                raise NotAvailable("step.run is not in this Triggerfish")
            res.add(
                "W3",
                "10-step workflow",
                system,
                "steps/s",
                True,
                tfw.durable_steps(stack, sizes.w3),
            )
        elif workload == "W4":
            if not tfw.durable_available(stack):
                raise NotAvailable("waitpoint tokens are not in this Triggerfish")
            lat = tfw.token_resume(stack, sizes.w4)
            for p in ("p50", "p99"):
                res.add("W4", f"token -> continue {p}", system, "ms", False, lat[p])
        elif workload == "W6":
            worker = stack.workers[0]
            res.add("W6", "idle worker RSS", system, "MiB", False, rss_mb(worker.pid))
            kids = _task_children(worker.pid)
            res.add(
                "W6", "warm child RSS (largest)", system, "MiB", False, max(rss_mb(k) for k in kids)
            )


def tf_store_scale(system: str, sizes: Sizes, reps: int, res: Results) -> None:
    """W5: dequeue latency and runs.list's first page, before and after filling the store."""
    backend = _backend(system)
    with triggerfish_stack(backend) as stack:
        template = _warm(stack)
        rounds = [("0 runs", 0), (f"{sizes.w5_rows:,} runs", sizes.w5_rows)]
        for label, rows in rounds:
            if rows:
                seconds = fill_runs(stack.db_url, template, rows)
                print(f"    filled {rows:,} runs in {seconds:.0f}s", flush=True)
            for _ in range(reps):
                lat = tfw.latency_at_idle(stack, sizes.w5_samples)
                res.add(
                    "W5", f"dequeue (trigger->start p50), {label}", system, "ms", False, lat["p50"]
                )
                res.add(
                    "W5",
                    f"runs.list first page, {label}",
                    system,
                    "ms",
                    False,
                    tfw.list_first_page_ms(stack),
                )


class NotAvailable(Exception):
    """The system cannot run this workload (the reason is reported, not a failure)."""


# -- peers ------------------------------------------------------------------------------


def peer_measure(python: Path, workload: str, system: str, sizes: Sizes, res: Results) -> None:
    n = {"W1": sizes.w1, "W1b": sizes.w1, "W2": sizes.w2, "W3": sizes.w3, "W4": sizes.w4}
    timeout = 1200.0
    if system == "celery":
        module, extra = "celery_peer", []
    elif system == "procrastinate":
        module, extra = "procrastinate_peer", []
    else:
        module = "dbos_peer"
        extra = ["--mode", "inprocess" if system == "dbos-inprocess" else "queue"]
    if workload in ("W1", "W1b"):
        if system.startswith("dbos"):
            if workload == "W1b":
                raise NotAvailable("DBOS has no batch enqueue")
        else:
            extra = [
                "--mode",
                "batch" if workload == "W1b" else "one",
                "--batch",
                str(sizes.w1_batch),
            ]
        out = run_peer(python, module, ["W1", "--n", str(n[workload]), *extra], timeout)
        name = f"batched ({sizes.w1_batch}/request)" if workload == "W1b" else "one by one"
        res.add("W1", name, system, "runs/s", True, out["runs_per_s"])
    elif workload == "W2":
        out = run_peer(python, module, ["W2", "--n", str(n["W2"]), *extra], timeout)
        for p in ("p50", "p95", "p99"):
            res.add("W2", f"trigger->start {p}", system, "ms", False, out[p])
    elif workload == "W3":
        if system == "dbos-queue":
            raise NotAvailable("measured in-process (dbos-inprocess)")
        out = run_peer(python, module, ["W3", "--n", str(n["W3"]), *extra], timeout)
        res.add("W3", "10-step workflow", system, "steps/s", True, out["steps_per_s"])
    elif workload == "W4":
        if system != "dbos-inprocess":
            raise NotAvailable("no durable suspend/resume on a token")
        out = run_peer(python, module, ["W4", "--n", str(n["W4"]), *extra], timeout)
        for p in ("p50", "p99"):
            res.add("W4", f"token -> continue {p}", system, "ms", False, out[p])
    elif workload == "W6":
        if system == "dbos-inprocess":
            raise NotAvailable("runs inside the application process")
        out = run_peer(python, module, ["W6", *extra], timeout)
        res.add("W6", "idle worker RSS", system, "MiB", False, out["worker_mb"])
        if out["children_mb"]:
            res.add("W6", "warm child RSS (largest)", system, "MiB", False, max(out["children_mb"]))
    elif workload == "W5":
        raise NotAvailable("measured for Triggerfish only")


# -- report -----------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(metric: Metric, res: Results) -> str:
    ref = res.get(metric.workload, metric.name, REFERENCE)
    if ref is None or metric.system.startswith("triggerfish") or not metric.values:
        return ""
    peer = median(metric.values)
    if peer == 0:
        return ""
    return f"{median(ref.values) / peer:.2f}"


def table_rows(res: Results) -> list[list[str]]:
    rows = []
    order = {s: i for i, s in enumerate(SYSTEMS)}
    for metric in sorted(
        res.metrics.values(), key=lambda m: (m.workload, m.name, order.get(m.system, 99))
    ):
        vals = metric.values
        rows.append(
            [
                metric.workload,
                metric.name,
                metric.system,
                f"{_fmt(median(vals))} {metric.unit}",
                f"{_fmt(min(vals))} .. {_fmt(max(vals))}",
                str(len(vals)),
                _ratio(metric, res),
            ]
        )
    return rows


HEADER = ["workload", "figure", "system", "median", "min .. max", "reps", "TF-PG / peer"]


def print_table(res: Results) -> None:
    rows = [HEADER, *table_rows(res)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    for workload, system, why in res.unavailable:
        print(f"{workload} {system}: not available ({why})")
    for workload, system, why in res.failures:
        print(f"{workload} {system}: FAILED ({why.splitlines()[0] if why else ''})")


def _m(res: Results, w: str, name: str, system: str) -> float | None:
    metric = res.get(w, name, system)
    return median(metric.values) if metric else None


def targets(res: Results, sizes: Sizes) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target of the performance issue."""
    out: list[tuple[str, str, str]] = []

    def check(label: str, value: float | None, ok: Callable[[float], bool], shown: str) -> None:
        if value is None:
            out.append((label, "not measured", "—"))
        else:
            out.append((label, shown.format(value), "met" if ok(value) else "MISSED"))

    def ratio(w: str, name: str, peer: str) -> float | None:
        tf, other = _m(res, w, name, REFERENCE), _m(res, w, name, peer)
        return tf / other if tf is not None and other else None

    check(
        "W1 one by one >= 1.5x Celery",
        ratio("W1", "one by one", "celery"),
        lambda r: r >= 1.5,
        "{:.2f}x",
    )
    check(
        "W1 one by one >= 2x Procrastinate",
        ratio("W1", "one by one", "procrastinate"),
        lambda r: r >= 2,
        "{:.2f}x",
    )
    dbos = [
        v
        for v in (_m(res, "W1", "one by one", s) for s in ("dbos-inprocess", "dbos-queue"))
        if v is not None
    ]
    tf1 = _m(res, "W1", "one by one", REFERENCE)
    check(
        "W1 one by one >= 2x DBOS's best mode",
        tf1 / max(dbos) if tf1 is not None and dbos else None,
        lambda r: r >= 2,
        "{:.2f}x",
    )
    check(
        "W1 batched on SQLite >= 1,000 runs/s",
        _m(res, "W1", f"batched ({sizes.w1_batch}/request)", "triggerfish-sqlite"),
        lambda v: v >= 1000,
        "{:.0f} runs/s",
    )
    p50, cel = (
        _m(res, "W2", "trigger->start p50", REFERENCE),
        _m(res, "W2", "trigger->start p50", "celery"),
    )
    check(
        "W2 p50 <= Celery's p50",
        p50 / cel if p50 is not None and cel else None,
        lambda r: r <= 1,
        "{:.2f}x Celery",
    )
    check("W2 p50 <= 5 ms", p50, lambda v: v <= 5, "{:.2f} ms")
    check(
        "W2 p99 <= 25 ms",
        _m(res, "W2", "trigger->start p99", REFERENCE),
        lambda v: v <= 25,
        "{:.2f} ms",
    )
    check(
        "W3 steps/s >= 3x DBOS",
        ratio("W3", "10-step workflow", "dbos-inprocess"),
        lambda r: r >= 3,
        "{:.2f}x",
    )
    check(
        "W3 steps/s >= 1.0x Celery chain",
        ratio("W3", "10-step workflow", "celery"),
        lambda r: r >= 1,
        "{:.2f}x",
    )
    check(
        "W4 p50 <= 20 ms",
        _m(res, "W4", "token -> continue p50", REFERENCE),
        lambda v: v <= 20,
        "{:.2f} ms",
    )
    big = f"{sizes.w5_rows:,} runs"
    for label in ("dequeue (trigger->start p50)", "runs.list first page"):
        empty = _m(res, "W5", f"{label}, 0 runs", REFERENCE)
        full = _m(res, "W5", f"{label}, {big}", REFERENCE)
        check(
            f"W5 {label} with {big} within 1.5x of empty",
            full / empty if full is not None and empty else None,
            lambda r: r <= 1.5,
            "{:.2f}x",
        )
    check(
        f"W5 runs.list first page with {big} <= 50 ms",
        _m(res, "W5", f"runs.list first page, {big}", REFERENCE),
        lambda v: v <= 50,
        "{:.1f} ms",
    )
    check(
        "W6 idle worker < 80 MiB",
        _m(res, "W6", "idle worker RSS", REFERENCE),
        lambda v: v < 80,
        "{:.1f} MiB",
    )
    check(
        "W6 each warm child < 40 MiB",
        _m(res, "W6", "warm child RSS (largest)", REFERENCE),
        lambda v: v < 40,
        "{:.1f} MiB",
    )
    return out


def machine_info(peers: dict[str, str]) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass

    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "unknown"

    import importlib.metadata as md

    pg = version(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"])
    redis = version(["redis-cli", "-h", "127.0.0.1", "INFO", "server"])
    redis_v = next(
        (ln.split(":")[1] for ln in redis.splitlines() if ln.startswith("redis_version")), "unknown"
    )
    return [
        f"- Machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs, {mem} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; PostgreSQL {pg or 'unknown'}; Redis {redis_v}",
        f"- Triggerfish {md.version('triggerfish')} (git {_git_rev()}), "
        + ", ".join(f"{k} {v}" for k, v in peers.items()),
    ]


def _git_rev() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True
    )
    return out.stdout.strip() or "unknown"


def write_results(
    res: Results,
    sizes: Sizes,
    args: argparse.Namespace,
    peers: dict[str, str],
    began: datetime,
    load: tuple[str, str],
    elapsed: float,
) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench` (see `bench/README.md`); do not edit by hand.",
        "",
        f"- Run: {began:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} min, command "
        f"`python -m bench {' '.join(args.argv)}`".rstrip(),
        *machine_info(peers),
        f"- Load average (1/5/15 min) at start: {load[0]}; at end: {load[1]}",
        f"- Sizes: W1 {sizes.w1:,} runs (batches of {sizes.w1_batch}), W2 {sizes.w2} runs, "
        f"W3 {sizes.w3} runs x 10 steps, W4 {sizes.w4} runs, W5 {sizes.w5_rows:,} rows "
        f"({sizes.w5_samples} samples per figure), {args.reps} repetition(s)",
        "",
        "## Results",
        "",
        "Ratio column: Triggerfish on PostgreSQL divided by the peer, same figure "
        "(above 1 is better for throughput, below 1 is better for latency and memory).",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for row in table_rows(res):
        lines.append("| " + " | ".join(row) + " |")
    if res.unavailable or res.failures:
        lines += ["", "Not measured:", ""]
        for workload, system, why in res.unavailable:
            lines.append(f"- {workload} on {system}: not available ({why})")
        for workload, system, why in res.failures:
            first = why.strip().splitlines()[-1] if why.strip() else ""
            lines.append(f"- {workload} on {system}: failed ({first})")
    lines += ["", "## Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    for label, shown, verdict in targets(res, sizes):
        lines.append(f"| {label} | {shown} | {verdict} |")
    if res.floors:
        lines += [
            "",
            "## Machine floors",
            "",
            "Measured alone by `python -m bench.floor` before the workloads (medians):",
            "",
            *floor_lines(res.floors),
        ]
    lines += ["", "## Raw figures per repetition", ""]
    for metric in res.metrics.values():
        vals = ", ".join(_fmt(v) for v in metric.values)
        lines.append(f"- {metric.workload} {metric.name}, {metric.system}: {vals} {metric.unit}")
    lines += ["", "Systems:", ""]
    lines += [f"- `{k}`: {v}" for k, v in SYSTEMS.items()]
    RESULTS.write_text("\n".join(lines) + "\n")


# -- main ------------------------------------------------------------------------------

WORKLOADS = ["W6", "W2", "W1", "W1b", "W3", "W4", "W5"]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition")
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--only", help="workloads, e.g. W1,W2 (W1b is W1 batched)")
    parser.add_argument("--systems", help=f"subset of {','.join(SYSTEMS)}")
    parser.add_argument("--w1", type=int, help="W1 runs")
    parser.add_argument("--w2", type=int, help="W2 runs")
    parser.add_argument("--w3", type=int, help="W3 runs")
    parser.add_argument("--w4", type=int, help="W4 runs")
    parser.add_argument("--w5-rows", type=int, help="W5 rows")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args(argv)
    args.argv = argv
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.w1:
        sizes.w1 = args.w1
    for name in ("w2", "w3", "w4"):
        if getattr(args, name):
            setattr(sizes, name, getattr(args, name))
    if args.w5_rows:
        sizes.w5_rows = args.w5_rows
    args.reps = args.reps or (1 if args.quick else 3)
    workloads = [w for w in WORKLOADS if not args.only or w in args.only.split(",")]
    if args.only and "W1" in args.only.split(",") and "W1b" not in args.only.split(","):
        workloads.append("W1b")
    systems = [s for s in SYSTEMS if not args.systems or s in args.systems.split(",")]
    began = datetime.now(UTC)
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    t0 = time.perf_counter()
    python = ensure_peers_venv()
    peers = peer_versions(python)
    res = Results()
    print("machine floors ...", flush=True)
    try:
        res.floors = machine_floors()
    except Exception:
        res.failures.append(("floors", "machine", traceback.format_exc()))
        traceback.print_exc()
    for workload in workloads:
        for system in systems:
            if workload == "W5":
                if not system.startswith("triggerfish"):
                    continue
                print(f"{workload} {system} ...", flush=True)
                try:
                    tf_store_scale(system, sizes, args.reps, res)
                except Exception:
                    res.failures.append((workload, system, traceback.format_exc()))
                    traceback.print_exc()
                continue
            for rep in range(args.reps):
                print(f"{workload} {system} rep {rep + 1}/{args.reps} ...", flush=True)
                try:
                    if system.startswith("triggerfish"):
                        tf_measure(workload, system, sizes, res)
                    else:
                        peer_measure(python, workload, system, sizes, res)
                except NotAvailable as exc:
                    res.unavailable.append((workload, system, str(exc)))
                    break
                except Exception:
                    res.failures.append((workload, system, traceback.format_exc()))
                    traceback.print_exc()
                    break
        if not args.no_write:  # after every workload, so an interrupted run leaves its figures
            write_results(
                res,
                sizes,
                args,
                peers,
                began,
                (load_start, " ".join(f"{x:.2f}" for x in os.getloadavg())),
                time.perf_counter() - t0,
            )
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print()
    print_table(res)
    print()
    for label, shown, verdict in targets(res, sizes):
        print(f"{verdict:7} {label}: {shown}")
    if res.floors:
        print()
        print("\n".join(floor_lines(res.floors)))
    if not args.no_write:
        write_results(
            res, sizes, args, peers, began, (load_start, load_end), time.perf_counter() - t0
        )
        print(f"\nwrote {RESULTS.relative_to(REPO_DIR)}")
