"""Workloads measured on Triggerfish, driven from this (client) process over the
public API with the Python SDK, as an application would."""

from __future__ import annotations

import asyncio
import time

import httpx

from bench._common import (
    DONE_POLL,
    FIRST_LOOK,
    RESULT_POLL,
    BenchError,
    latency_summary,
    median,
    wait_until,
)
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
        interval=DONE_POLL,
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


def throughput_in_flight(stack: Stack, n: int, in_flight: int, timeout: float = 600) -> float:
    """Runs/s for ``n`` no-op runs triggered one request each, ``in_flight`` at a time
    from one asyncio client (as concurrent requests of a web app would), first
    trigger to last done."""

    async def trigger_all(client: Triggerfish) -> None:
        slots = asyncio.Semaphore(in_flight)

        async def one(i: int) -> None:
            async with slots:
                await client.tasks.trigger_async("noop", {"i": i})

        try:
            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await client.aclose()

    client = client_for(stack)
    try:
        start = time.perf_counter()
        asyncio.run(trigger_all(client_for(stack)))
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
            time.sleep(FIRST_LOOK)
            run = client.runs.poll(handle.id, timeout=30, interval=RESULT_POLL)
            if run.status != "COMPLETED":
                raise BenchError(f"run {run.id} ended {run.status}")
            samples.append((run.output["started"] - sent) * 1000)
    finally:
        client.close()
    return latency_summary(samples)


def _post(stack: Stack, path: str, body: object, timeout: float = 120) -> httpx.Response:
    return httpx.post(
        stack.api_url + path,
        json=body,
        headers={"Authorization": f"Bearer {stack.key}"},
        timeout=timeout,
    )


def throughput_batched(stack: Stack, n: int, batch: int, timeout: float = 600) -> float | None:
    """Runs/s for ``n`` no-op runs triggered ``batch`` per request (``POST /api/v2/tasks/batch``).

    None when this server has no batch trigger.
    """
    client = client_for(stack)
    try:
        start = time.perf_counter()
        for first in range(0, n, batch):
            last = min(n, first + batch)
            items = [{"task": "noop", "payload": {"i": i}} for i in range(first, last)]
            response = _post(stack, "/api/v2/tasks/batch", {"items": items})
            if response.status_code in (404, 405):
                return None
            if not response.is_success:
                raise BenchError(f"batch trigger failed: {response.status_code} {response.text}")
        done = wait_all_finished(client, n, timeout)
    finally:
        client.close()
    return n / (done - start)


def durable_available(stack: Stack) -> bool:
    """Whether this Triggerfish has durable steps and tokens (the bench project registered them)."""
    try:
        import triggerfish

        return hasattr(triggerfish, "step") and hasattr(triggerfish, "wait")
    except ImportError:
        return False


def durable_steps(stack: Stack, n: int, steps: int = 10, timeout: float = 900) -> float:
    """Steps/s of ``n`` runs of ``steps`` sequential no-op ``step.run`` calls each."""
    client = client_for(stack)
    try:
        start = time.perf_counter()
        for i in range(n):
            client.tasks.trigger("steps10", {"i": i, "steps": steps})
        done = wait_all_finished(client, n, timeout)
    finally:
        client.close()
    return n * steps / (done - start)


def token_resume(stack: Stack, n: int) -> dict[str, float]:
    """Time from completing a waitpoint token until the waiting task continues (ms)."""
    client = client_for(stack)
    samples: list[float] = []
    try:
        for i in range(n):
            token = client.waitpoints.create_token(timeout="10m")  # type: ignore[attr-defined]
            handle = client.tasks.trigger("await-token", {"token": token.id, "i": i})
            wait_until(
                lambda h=handle: client.runs.retrieve(h.id).status == "WAITING",
                30,
                "the run to suspend on its token",
                interval=RESULT_POLL,
            )
            time.sleep(0.02)
            completed = time.time()
            client.waitpoints.complete_token(token.id, {"i": i})  # type: ignore[attr-defined]
            time.sleep(FIRST_LOOK)
            run = client.runs.poll(handle.id, timeout=30, interval=RESULT_POLL)
            if run.status != "COMPLETED":
                raise BenchError(f"run {run.id} ended {run.status}")
            samples.append((run.output["continued"] - completed) * 1000)
    finally:
        client.close()
    return latency_summary(samples)


def list_first_page_ms(stack: Stack, repeats: int = 20) -> float:
    """Median time of ``GET /api/v1/runs`` (first page, 25 runs), in ms."""
    headers = {"Authorization": f"Bearer {stack.key}"}
    times: list[float] = []
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=60) as http:
        for _ in range(repeats):
            began = time.perf_counter()
            response = http.get("/api/v1/runs", params={"page[size]": 25})
            times.append((time.perf_counter() - began) * 1000)
            if not response.is_success or len(response.json()["data"]) == 0:
                raise BenchError(f"runs.list failed: {response.status_code} {response.text[:200]}")
    return median(times)
