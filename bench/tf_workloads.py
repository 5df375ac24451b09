"""Workloads measured on Triggerfish, driven from this (client) process over the
public API with the Python SDK, as an application would."""

from __future__ import annotations

import time

from bench._common import BenchError, percentile, wait_until
from bench._triggerfish import Stack
from triggerfish import Triggerfish

#: statuses a run passes through before it finishes
_OPEN = ["PENDING_VERSION", "DELAYED", "QUEUED", "DEQUEUED", "EXECUTING", "WAITING"]
_BAD = ["FAILED", "CRASHED", "SYSTEM_FAILURE", "EXPIRED", "TIMED_OUT", "CANCELED"]


def client_for(stack: Stack) -> Triggerfish:
    return Triggerfish(api_url=stack.api_url, secret_key=stack.key, timeout=60)


def wait_all_finished(client: Triggerfish, expected: int, timeout: float) -> float:
    """Block until no run is open; return the time it was seen so. Fail if any run failed."""
    wait_until(
        lambda: not client.runs.list(status=_OPEN, limit=1).data,
        timeout,
        f"{expected} runs to finish",
        interval=0.01,
    )
    done = time.perf_counter()
    failed = client.runs.list(status=_BAD, limit=5).data
    if failed:
        raise BenchError(f"runs did not complete: {[(r.id, r.status) for r in failed]}")
    return done


def throughput_one_by_one(stack: Stack, n: int, timeout: float = 600) -> float:
    """Runs/s for ``n`` no-op runs triggered one request at a time, first trigger to last done."""
    client = client_for(stack)
    try:
        start = time.perf_counter()
        for i in range(n):
            client.tasks.trigger("noop", {"i": i})
        done = wait_all_finished(client, n, timeout)
    finally:
        client.close()
    return n / (done - start)


def latency_at_idle(stack: Stack, n: int, pause: float = 0.02) -> dict[str, float]:
    """Trigger -> start (ms) of ``n`` sequential runs, each on an idle worker.

    The clock starts just before the trigger request is sent and stops at the
    wall-clock time the task body recorded when it began.
    """
    samples: list[float] = []
    client = client_for(stack)
    try:
        for i in range(n):
            time.sleep(pause)  # the worker is back in its idle long poll
            sent = time.time()
            handle = client.tasks.trigger("noop", {"i": i})
            run = client.runs.poll(handle.id, timeout=30, interval=0.005)
            if run.status != "COMPLETED":
                raise BenchError(f"run {run.id} ended {run.status}")
            samples.append((run.output["started"] - sent) * 1000)
    finally:
        client.close()
    return {
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
    }
