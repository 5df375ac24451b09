"""What one W2 run costs: database work and CPU per run, figures that the load
of other work on the machine moves far less than it moves latencies.

    .venv/bin/python -m bench.per_run            # 400 sequential runs on PostgreSQL
    .venv/bin/python -m bench.per_run --runs 1000

Runs W2's loop (trigger one no-op run, wait until it started, again) on a fresh
``triggerfish-pg`` stack after a warm-up, and prints, per run: the database's
transactions and rows (``pg_stat_database`` of the stack's database, which
includes the maintenance loop's share of the time), the CPU time of the server
and of the worker with its task processes, and the loop's latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Iterable

import asyncpg

from bench._common import children_of
from bench._triggerfish import Stack, triggerfish_stack
from bench.tf_workloads import latency_at_idle

#: columns of ``pg_stat_database`` reported per run
COUNTERS = ("xact_commit", "xact_rollback", "tup_fetched", "tup_inserted", "tup_updated")
#: seconds PostgreSQL may take to publish a backend's counters
STATS_FLUSH = 1.0


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time of these processes and their children so far."""
    ticks = 0
    for pid in pids:
        for each in (pid, *children_of(pid)):
            try:
                with open(f"/proc/{each}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            ticks += int(fields[11]) + int(fields[12])
    return ticks / 100  # USER_HZ


async def _counters(db_url: str) -> dict[str, int]:
    name = db_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            f"SELECT {', '.join(COUNTERS)} FROM pg_stat_database WHERE datname = $1", name
        )
    finally:
        await conn.close()
    assert row is not None
    return {k: int(row[k]) for k in COUNTERS}


def measure(stack: Stack, runs: int, warm_up: int = 30) -> dict[str, object]:
    latency_at_idle(stack, warm_up)
    time.sleep(STATS_FLUSH)
    workers = [w.pid for w in stack.workers]
    server0, workers0 = cpu_seconds([stack.server.pid]), cpu_seconds(workers)
    before = asyncio.run(_counters(stack.db_url))
    latency = latency_at_idle(stack, runs)
    time.sleep(STATS_FLUSH)
    after = asyncio.run(_counters(stack.db_url))
    server1, workers1 = cpu_seconds([stack.server.pid]), cpu_seconds(workers)
    return {
        "runs": runs,
        "per_run": {k: round((after[k] - before[k]) / runs, 2) for k in COUNTERS},
        "server_cpu_ms": round((server1 - server0) / runs * 1000, 2),
        "worker_cpu_ms": round((workers1 - workers0) / runs * 1000, 2),
        "latency_ms": {k: round(v, 2) for k, v in latency.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    with triggerfish_stack("postgresql") as stack:
        print(json.dumps(measure(stack, args.runs), indent=2))


if __name__ == "__main__":
    main()
