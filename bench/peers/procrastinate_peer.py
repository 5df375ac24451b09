"""Procrastinate on PostgreSQL: two worker processes (concurrency 1 each).

Run by the suite in ``bench/.venv-peers``::

    python -m bench.peers.procrastinate_peer W1 --n 5000 --mode one

Tasks are ``async def`` (Procrastinate's own fast path). Procrastinate keeps no
task results, so the latency task writes the time its body began into a table
of the benchmark. Each measurement uses a fresh database, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from bench._common import (
    DONE_POLL,
    FIRST_LOOK,
    REPO_DIR,
    RESULT_POLL,
    BenchError,
    clean_env,
    emit,
    latency_summary,
    pg_database,
    pg_url,
    rss_mb,
    spawn,
    stop_process,
    wait_until,
)


def _open_jobs(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    ).fetchone()
    failed = conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE status NOT IN ('todo', 'doing', 'succeeded')"
    ).fetchone()
    if failed and failed[0]:
        raise BenchError(f"{failed[0]} procrastinate jobs did not succeed")
    return int(row[0]) if row else 0


def _workers(url: str, folder: Path, count: int = 2) -> list[Any]:
    procs = [
        spawn(
            [sys.executable, "-m", "bench.peers.procrastinate_peer", "serve"],
            folder / f"procrastinate-worker-{i}.log",
            clean_env({"PYTHONPATH": str(REPO_DIR), "TF_BENCH_PROCRASTINATE_URL": url}),
            cwd=REPO_DIR,
        )
        for i in range(count)
    ]
    return procs


def _wait_drained(conn: psycopg.Connection[Any], timeout: float = 900) -> float:
    wait_until(lambda: _open_jobs(conn) == 0, timeout, "procrastinate jobs", interval=DONE_POLL)
    return time.perf_counter()


def run(workload: str, url: str, n: int, mode: str, batch: int, folder: Path) -> dict[str, Any]:
    conn = psycopg.connect(url, autocommit=True)
    os.environ["TF_BENCH_PROCRASTINATE_URL"] = url
    from bench.peers._procrastinate_app import app as capp

    with capp.open():
        capp.schema_manager.apply_schema()
    conn.execute("CREATE TABLE bench_stamps (i int PRIMARY KEY, started double precision)")
    procs = _workers(url, folder)
    try:
        with capp.open():
            noop_ = capp.configure_task("noop")
            noop_.batch_defer(*({"i": -1} for _ in range(20)))  # warm up both workers
            _wait_drained(conn, 60)
            if workload == "W1":
                start = time.perf_counter()
                if mode == "one":
                    for i in range(n):
                        noop_.defer(i=i)
                else:
                    for first in range(0, n, batch):
                        noop_.batch_defer(*({"i": i} for i in range(first, min(n, first + batch))))
                done = _wait_drained(conn)
                return {"runs_per_s": n / (done - start), "seconds": done - start}
            if workload == "W2":
                samples = []
                for i in range(n):
                    time.sleep(0.02)
                    sent = time.time()
                    capp.configure_task("stamp").defer(i=i)
                    time.sleep(FIRST_LOOK)
                    row = wait_until(
                        lambda i=i: conn.execute(
                            "SELECT started FROM bench_stamps WHERE i = %s", (i,)
                        ).fetchone(),
                        30,
                        "a procrastinate job to start",
                        interval=RESULT_POLL,
                    )
                    samples.append((row[0] - sent) * 1000)
                return latency_summary(samples)
            if workload == "W3":
                start = time.perf_counter()
                for chain in range(n):
                    capp.configure_task("hop").defer(chain=chain, n=0)
                done = _wait_drained(conn)
                return {"steps_per_s": n * 10 / (done - start), "seconds": done - start}
            if workload == "W6":
                return {"worker_mb": rss_mb(procs[0].pid), "children_mb": []}
            raise BenchError(f"unknown workload {workload}")
    finally:
        for proc in procs:
            stop_process(proc)
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["W1", "W2", "W3", "W6", "serve"])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--mode", choices=["one", "batch"], default="one")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--folder", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    if args.workload == "serve":
        from bench.peers._procrastinate_app import app

        app.run_worker(queues=["tfbench"], concurrency=1, install_signal_handlers=True)
        return
    with pg_database("tf_bench_procrastinate") as name:
        url = pg_url(name)
        emit(run(args.workload, url, args.n, args.mode, args.batch, args.folder))


if __name__ == "__main__":
    main()
