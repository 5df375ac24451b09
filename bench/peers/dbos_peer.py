"""DBOS Transact on PostgreSQL, in-process and in queue mode.

Run by the suite in ``bench/.venv-peers``::

    python -m bench.peers.dbos_peer W1 --n 5000 --mode inprocess
    python -m bench.peers.dbos_peer W1 --n 5000 --mode queue

``inprocess``: the client process launches DBOS and starts workflows itself
(``DBOS.start_workflow``); they run on its thread pool. ``queue``: two worker
processes launch DBOS and serve the queue ``tfbench`` (polling every 10 ms);
the client enqueues with ``DBOSClient``. Each measurement uses a fresh system
database, dropped at the end.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSClient, Queue

from bench._common import (
    DONE_POLL,
    REPO_DIR,
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

queue = Queue("tfbench", polling_interval_sec=0.01)


@DBOS.workflow(name="noop")
def noop(i: int) -> float:
    return time.time()


@DBOS.step(name="bench_step")
def bench_step(k: int) -> int:
    return k


@DBOS.workflow(name="durable")
def durable(i: int) -> float:
    for k in range(10):
        bench_step(k)
    return time.time()


@DBOS.workflow(name="waiter")
def waiter(i: int) -> float:
    DBOS.recv("go", timeout_seconds=60)
    return time.time()


def _launch(url: str) -> None:
    DBOS(
        config={
            "name": "tfbench",
            "system_database_url": url,
            "run_admin_server": False,
            "log_level": "WARNING",
        }
    )
    DBOS.launch()


def _open_count(client: DBOSClient) -> int:
    return len(
        client.list_workflows(
            status=["ENQUEUED", "PENDING"], load_input=False, load_output=False, limit=1
        )
    )


def _queue_workers(url: str, folder: Path, count: int = 2) -> list[Any]:
    procs = [
        spawn(
            [sys.executable, "-m", "bench.peers.dbos_peer", "serve", "--url", url],
            folder / f"dbos-worker-{i}.log",
            clean_env({"PYTHONPATH": str(REPO_DIR)}),
            cwd=REPO_DIR,
        )
        for i in range(count)
    ]
    for i, proc in enumerate(procs):
        log = folder / f"dbos-worker-{i}.log"
        wait_until(
            lambda p=proc, lg=log: p.poll() is None and "serving" in lg.read_text(),
            60,
            "a DBOS worker to launch",
            interval=0.05,
        )
    return procs


def w1(url: str, n: int, mode: str, folder: Path) -> dict[str, Any]:
    if mode == "inprocess":
        _launch(url)
        for handle in [DBOS.start_workflow(noop, -1) for _ in range(20)]:
            handle.get_result()
        start = time.perf_counter()
        handles = [DBOS.start_workflow(noop, i) for i in range(n)]
        for handle in handles:
            handle.get_result()
        done = time.perf_counter()
        return {"runs_per_s": n / (done - start), "seconds": done - start}
    _launch(url)  # creates the schema; this process runs nothing from the queue
    procs = _queue_workers(url, folder)
    client = DBOSClient(system_database_url=url)
    try:
        for handle in [
            client.enqueue({"queue_name": "tfbench", "workflow_name": "noop"}, -1)
            for _ in range(20)
        ]:
            handle.get_result()
        start = time.perf_counter()
        for i in range(n):
            client.enqueue({"queue_name": "tfbench", "workflow_name": "noop"}, i)
        wait_until(lambda: _open_count(client) == 0, 900, "DBOS workflows", interval=DONE_POLL)
        done = time.perf_counter()
        return {
            "runs_per_s": n / (done - start),
            "seconds": done - start,
            "worker_mb": [rss_mb(p.pid) for p in procs],
        }
    finally:
        client.destroy()
        for proc in procs:
            stop_process(proc)


def w2(url: str, n: int, mode: str, folder: Path) -> dict[str, Any]:
    _launch(url)
    samples = []
    if mode == "inprocess":
        for i in range(n):
            time.sleep(0.02)
            sent = time.time()
            samples.append((DBOS.start_workflow(noop, i).get_result() - sent) * 1000)
        return latency_summary(samples)
    procs = _queue_workers(url, folder)
    client = DBOSClient(system_database_url=url)
    try:
        for i in range(n):
            time.sleep(0.02)
            sent = time.time()
            started = client.enqueue({"queue_name": "tfbench", "workflow_name": "noop"}, i)
            samples.append((started.get_result() - sent) * 1000)
        return latency_summary(samples)
    finally:
        client.destroy()
        for proc in procs:
            stop_process(proc)


def w3(url: str, n: int) -> dict[str, Any]:
    _launch(url)
    start = time.perf_counter()
    handles = [DBOS.start_workflow(durable, i) for i in range(n)]
    for handle in handles:
        handle.get_result()
    done = time.perf_counter()
    return {"steps_per_s": n * 10 / (done - start), "seconds": done - start}


def w4(url: str, n: int) -> dict[str, Any]:
    """Time from ``DBOS.send`` until the workflow blocked in ``DBOS.recv`` continues."""
    _launch(url)
    samples = []
    for i in range(n):
        handle = DBOS.start_workflow(waiter, i)
        # recv has registered its wait once the workflow's status is PENDING and it idles
        time.sleep(0.05)
        sent = time.time()
        DBOS.send(handle.workflow_id, "continue", "go")
        samples.append((handle.get_result() - sent) * 1000)
    return latency_summary(samples)


def serve(url: str) -> None:
    _launch(url)
    print("serving", flush=True)
    threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=["W1", "W2", "W3", "W4", "W6", "serve"])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--mode", choices=["inprocess", "queue"], default="inprocess")
    parser.add_argument("--url")
    parser.add_argument("--folder", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    if args.workload == "serve":
        serve(args.url)
        return
    with pg_database("tf_bench_dbos") as name:
        url = pg_url(name)
        try:
            if args.workload == "W1":
                emit(w1(url, args.n, args.mode, args.folder))
            elif args.workload == "W2":
                emit(w2(url, args.n, args.mode, args.folder))
            elif args.workload == "W3":
                emit(w3(url, args.n))
            elif args.workload == "W4":
                emit(w4(url, args.n))
            elif args.workload == "W6":
                procs = _queue_workers_after_launch(url, args.folder)
                try:
                    emit({"worker_mb": rss_mb(procs[0].pid), "children_mb": []})
                finally:
                    for proc in procs:
                        stop_process(proc)
        finally:
            DBOS.destroy(destroy_registry=False)


def _queue_workers_after_launch(url: str, folder: Path) -> list[Any]:
    _launch(url)
    procs = _queue_workers(url, folder, count=1)
    client = DBOSClient(system_database_url=url)
    try:
        for handle in [
            client.enqueue({"queue_name": "tfbench", "workflow_name": "noop"}, -1)
            for _ in range(10)
        ]:
            handle.get_result()
    finally:
        client.destroy()
    if procs[0].poll() is not None:
        raise BenchError("DBOS worker exited")
    return procs


if __name__ == "__main__":
    main()
