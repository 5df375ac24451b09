"""Celery 5 with the Redis broker and result backend (prefork pool, concurrency 2).

Run by the suite in ``bench/.venv-peers``::

    python -m bench.peers.celery_peer W1 --n 5000 --mode one

The benchmark uses its own Redis database (``TRIGGERFISH_BENCH_REDIS_DB``,
default 11), emptied before and after each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from celery import Celery, chain, group

from bench._common import (
    DONE_POLL,
    REDIS_URL,
    REPO_DIR,
    BenchError,
    children_of,
    clean_env,
    emit,
    latency_summary,
    rss_mb,
    spawn,
    stop_process,
)

REDIS_DB = int(os.environ.get("TRIGGERFISH_BENCH_REDIS_DB", "11"))
BROKER = f"{REDIS_URL}/{REDIS_DB}"

app = Celery("tfbench", broker=BROKER, backend=BROKER)
app.conf.update(
    task_default_queue="tfbench",
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(i: int = 0) -> float:
    return time.time()


@app.task(name="step")
def step(previous: Any = None) -> float:
    return time.time()


def _flush() -> None:
    app.backend.client.flushdb()


def _start_worker(folder: Path) -> Any:
    proc = spawn(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.peers.celery_peer",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        folder / "celery-worker.log",
        clean_env({"PYTHONPATH": str(REPO_DIR)}),
        cwd=REPO_DIR,
    )
    # warm up: both children have run tasks before anything is timed
    for result in [noop.delay(-1) for _ in range(20)]:
        result.get(timeout=60)
    return proc


def _wait_results(ids: list[str], timeout: float = 900) -> float:
    """Poll the result backend until every task id has a result; return when it was seen."""
    client = app.backend.client
    keys = {i: app.backend.get_key_for_task(i) for i in ids}
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending:
        values = client.mget([keys[i] for i in pending])
        failed = [v for v in values if v is not None and json.loads(v)["status"] != "SUCCESS"]
        if failed:
            raise BenchError(f"celery tasks failed: {failed[:3]}")
        pending = [i for i, v in zip(pending, values, strict=True) if v is None]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"{len(pending)} celery tasks unfinished after {timeout}s")
        time.sleep(DONE_POLL)
    return time.perf_counter()


def w1(n: int, mode: str, batch: int) -> dict[str, Any]:
    start = time.perf_counter()
    if mode == "one":
        ids = [noop.delay(i).id for i in range(n)]
    else:
        ids = []
        for first in range(0, n, batch):
            res = group(noop.s(i) for i in range(first, min(n, first + batch))).apply_async()
            ids.extend(r.id for r in res.results)
    done = _wait_results(ids)
    return {"runs_per_s": n / (done - start), "seconds": done - start}


def w2(n: int) -> dict[str, Any]:
    samples = []
    for i in range(n):
        time.sleep(0.02)
        sent = time.time()
        started = noop.delay(i).get(timeout=30)
        samples.append((started - sent) * 1000)
    return latency_summary(samples)


def w3(n: int, steps: int = 10) -> dict[str, Any]:
    start = time.perf_counter()
    ids = [
        chain(step.s(None), *(step.s() for _ in range(steps - 1))).apply_async().id
        for _ in range(n)
    ]
    done = _wait_results(ids)
    return {"steps_per_s": n * steps / (done - start), "seconds": done - start}


def w6(proc: Any) -> dict[str, Any]:
    kids = children_of(proc.pid)
    return {"worker_mb": rss_mb(proc.pid), "children_mb": [rss_mb(k) for k in kids]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["W1", "W2", "W3", "W6"])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--mode", choices=["one", "batch"], default="one")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--folder", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    _flush()
    proc = _start_worker(args.folder)
    try:
        if args.workload == "W1":
            emit(w1(args.n, args.mode, args.batch))
        elif args.workload == "W2":
            emit(w2(args.n))
        elif args.workload == "W3":
            emit(w3(args.n))
        elif args.workload == "W6":
            emit(w6(proc))
    finally:
        stop_process(proc)
        _flush()


if __name__ == "__main__":
    main()
