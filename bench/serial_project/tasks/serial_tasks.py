"""The task of ``bench.serial_queue``: a no-op on a queue that runs one at a time.

A project of its own: a queue with a limit makes its environment a constrained
one, whose claims take the general path, so it must not share a worker (or an
environment) with the core benchmark's workloads.
"""

from __future__ import annotations

import time

from triggerfish import queue, task


@task(id="noop-serial", queue=queue("bench-serial", concurrency_limit=1))
def noop_serial(payload: dict) -> dict:
    return {"started": time.time()}
