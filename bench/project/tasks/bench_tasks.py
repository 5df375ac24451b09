"""Tasks the benchmark triggers. Each returns the wall-clock time at which its
body began, so the client can measure trigger -> start from its own clock."""

from __future__ import annotations

import time

from triggerfish import queue, task


@task(id="noop")
def noop(payload: dict) -> dict:
    return {"started": time.time()}


@task(id="noop-serial", queue=queue("bench-serial", concurrency_limit=1))
def noop_serial(payload: dict) -> dict:
    """``noop`` through a queue that runs one at a time (``bench.serial_queue``)."""
    return {"started": time.time()}
