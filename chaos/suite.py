"""``python -m chaos``: start everything, load it, inject the faults, check, report.

    python -m chaos            # the full run: three rounds of every fault, a few thousand runs
    python -m chaos --ci       # one round, bounded counts and time (.ci/run calls it)
    python -m chaos --rounds 1 --settle 5 --max-runs 60   # a tiny run (the slow test)

Exit status 0 only when every fault recovered, every run finished and the
check found no violation; the logs of a failed run are kept and named.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from chaos import faults as fault_mod
from chaos._procs import ChaosError, kill_all
from chaos.check import (
    CUT_OFF,
    KINDS,
    AttemptView,
    FaultRecord,
    Report,
    RunView,
    check,
    render,
)
from chaos.cluster import Cluster, Settings
from chaos.effects import DATABASE as EFFECTS_DB
from chaos.effects import EffectsReader
from chaos.load import CALL_TIMEOUT, Load
from chaos.postgres import PgInstance
from triggerfish import Triggerfish

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELED", "TIMED_OUT", "EXPIRED", "SYSTEM_FAILURE"}


@dataclass
class Profile:
    rounds: int
    #: seconds of load before the first fault and after each one
    settle: float
    #: unfinished runs at most
    max_in_flight: int
    #: stop triggering after this many runs (None: until the faults are done)
    max_runs: int | None
    #: seconds the last runs get to finish
    drain: float
    heartbeat_timeout: float
    concurrency: int


PROFILES = {
    "full": Profile(3, 30.0, 40, None, 300.0, 10.0, 3),
    "ci": Profile(1, 12.0, 24, None, 150.0, 10.0, 3),
}


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGTERM / SIGHUP unwind like Ctrl-C (which asyncio lets through every task's
    ``except Exception``), so that every process is stopped."""
    del frame
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ci", action="store_true", help="the bounded form (~4 min)")
    parser.add_argument("--rounds", type=int, help="times every fault is injected")
    parser.add_argument("--settle", type=float, help="seconds of load between faults")
    parser.add_argument("--max-runs", type=int, help="stop triggering after this many runs")
    parser.add_argument("--max-in-flight", type=int, help="unfinished runs at most")
    parser.add_argument("--heartbeat-timeout", type=float, help="the servers' heartbeat timeout")
    parser.add_argument(
        "--failover",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="give each worker both server URLs, its own first (--no-failover: its own only)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs even on success")
    parser.add_argument("--json", type=Path, help="also write the table's figures to this file")
    args = parser.parse_args(argv)
    p = PROFILES["ci" if args.ci else "full"]
    profile = Profile(
        rounds=args.rounds if args.rounds is not None else p.rounds,
        settle=args.settle if args.settle is not None else p.settle,
        max_in_flight=args.max_in_flight or p.max_in_flight,
        max_runs=args.max_runs if args.max_runs is not None else p.max_runs,
        drain=p.drain,
        heartbeat_timeout=args.heartbeat_timeout or p.heartbeat_timeout,
        concurrency=p.concurrency,
    )
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    folder = Path(tempfile.mkdtemp(prefix="tf-chaos-"))
    folder.chmod(0o755)
    ok = False
    try:
        ok = _run(profile, folder, args.failover, args.json)
    except (ChaosError, KeyboardInterrupt) as exc:
        print(f"chaos: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        kill_all()
        if ok and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            print(f"chaos: logs kept in {folder}", file=sys.stderr)
    return 0 if ok else 1


def _commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    return out.stdout.strip() or "unknown"


def _say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _run(profile: Profile, folder: Path, failover: bool, json_out: Path | None) -> bool:
    started = time.monotonic()
    _say(f"chaos: {profile}, commit {_commit()}, logs in {folder}")
    with PgInstance.create(folder / "pg") as pg:
        pg.create_database("triggerfish")
        pg.create_database(EFFECTS_DB)
        _say(f"PostgreSQL {pg.bin.parent.name} on port {pg.port}")
        settings = Settings(
            heartbeat_timeout=profile.heartbeat_timeout,
            concurrency=profile.concurrency,
            failover=failover,
        )
        cluster = Cluster(pg.url("triggerfish"), pg.url(EFFECTS_DB), folder, settings)
        try:
            cluster.prepare()
            cluster.start()
            _say(
                "servers "
                + ", ".join(s.url for s in cluster.servers)
                + "; workers "
                + ", ".join(str(w.pid) for w in cluster.workers)
            )
            report, healthy = asyncio.run(_drive(profile, cluster, pg))
        finally:
            cluster.stop()
    print()
    print(render(report))
    (folder / "report.txt").write_text(render(report) + "\n")
    with (folder / "findings.txt").open("w") as fh:
        for f in report.findings:
            fh.write(f"{f.at:.3f} {f.kind}: {f.key} {f.run_id}: {f.detail}\n")
    took = time.monotonic() - started
    print(f"\n(total {took:.0f} s)")
    if json_out is not None:
        json_out.write_text(json.dumps(_summary(report, healthy, took), indent=2) + "\n")
    return report.ok and healthy


def _summary(report: Report, healthy: bool, took: float) -> dict[str, Any]:
    return {
        "ok": report.ok and healthy,
        "recovered_and_drained": healthy,
        "seconds": round(took),
        "runs": report.runs,
        "effects": report.effects,
        "totals": {k: report.total(k) for k in (*KINDS, CUT_OFF)},
        "faults": [
            {
                "name": r.name,
                "recovery": r.recovery,
                "in_flight": r.in_flight,
                "retried": r.retried,
                **r.counts,
            }
            for r in report.rows
        ],
    }


async def _drive(profile: Profile, cluster: Cluster, pg: PgInstance) -> tuple[Report, bool]:
    reader = EffectsReader(pg.url(EFFECTS_DB))
    await reader.create()
    clients = [Triggerfish(api_url=s.url, secret_key=cluster.key) for s in cluster.servers]
    load = Load(clients, reader, max_in_flight=profile.max_in_flight)
    target = fault_mod.Target(cluster, pg, reader, outage=profile.heartbeat_timeout * 1.5 + 2)
    records: list[FaultRecord] = []
    healthy = True
    stop = asyncio.Event()
    loader = asyncio.create_task(load.run(stop, profile.max_runs))
    try:
        await asyncio.sleep(profile.settle)
        _say(f"steady: {load.stats.ended} runs finished")
        for round_ in range(profile.rounds):
            for fault, index in fault_mod.ROUND:
                if round_ % 2:  # alternate which worker / server is hit
                    index = 1 - index
                record = await fault(target, index)
                records.append(record)
                rec = "none" if record.recovery is None else f"{record.recovery:.1f} s"
                _say(f"{record.name}: recovered in {rec} {record.note}".rstrip())
                if record.recovery is None:
                    healthy = False
                await asyncio.sleep(profile.settle)
                _say(f"  {load.stats.ended} runs finished, {load.unfinished} unfinished")
        stop.set()
        await loader
        _say(f"draining {load.unfinished} unfinished runs")
        if not await load.drain(profile.drain):
            _say(f"not drained: {load.unfinished} runs unfinished after {profile.drain:.0f} s")
            healthy = False
        ids = {r for t in load.triggered.values() for r in t.run_ids}
        effects = await reader.all()
        ids |= {e.run_id for e in effects}
        _say(f"reading {len(ids)} runs and {len(effects)} side-effect rows")
        runs = await _fetch_runs(clients, ids)
        report = check(list(load.triggered.values()), runs, effects, records)
        s = load.stats
        _say(
            f"load: {s.triggered} keys triggered ({s.resent} sent twice), {s.trigger_errors} "
            f"failed calls retried, {s.hung_calls} calls unanswered after "
            f"{CALL_TIMEOUT:.0f} s (sent again), {s.tokens_completed} tokens completed"
        )
        return report, healthy
    finally:
        stop.set()
        await load.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(loader, 5)
        await reader.close()
        for c in clients:
            with contextlib.suppress(Exception):
                await c.aclose()


async def _fetch_runs(clients: list[Triggerfish], ids: set[str]) -> dict[str, RunView]:
    """Each run as the API reports it, once final (a bounded wait per run)."""
    limit = asyncio.Semaphore(12)
    out: dict[str, RunView] = {}

    async def one(run_id: str, i: int) -> None:
        async with limit:
            deadline = time.monotonic() + 90
            while True:
                try:
                    client = clients[i % len(clients)]
                    run: Any = await asyncio.wait_for(client.runs.retrieve_async(run_id), 30)
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    i += 1  # the other server
                    await asyncio.sleep(0.5)
                    continue
                if run.status in FINAL or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
        out[run_id] = RunView(
            run.id,
            run.status,
            run.output,
            tuple(
                AttemptView(
                    a.id,
                    a.number,
                    a.status,
                    a.started_at.timestamp() if a.started_at else None,
                    a.finished_at.timestamp() if a.finished_at else None,
                    a.error.message[:200] if a.error else "",
                )
                for a in run.attempts
            ),
        )

    await asyncio.gather(*(one(r, i) for i, r in enumerate(sorted(ids))))
    return out
