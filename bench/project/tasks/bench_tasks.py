"""Tasks the benchmark triggers. Each returns the wall-clock time at which its
body began, so the client can measure trigger -> start from its own clock."""

from __future__ import annotations

import time

from triggerfish import task


@task(id="noop")
def noop(payload: dict) -> dict:
    return {"started": time.time()}
