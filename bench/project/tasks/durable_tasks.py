"""Durable-execution tasks of the benchmark (W3, W4): registered only when this
Triggerfish has ``step`` and ``wait``."""

from __future__ import annotations

import time

import triggerfish
from triggerfish import task


def _same(k: int) -> int:
    return k


if hasattr(triggerfish, "step") and hasattr(triggerfish, "wait"):
    step = triggerfish.step
    wait = triggerfish.wait

    @task(id="steps10")
    def steps10(payload: dict) -> int:
        total = 0
        for k in range(int(payload.get("steps", 10))):
            total += step.run(f"s{k}", _same, k)
        return total

    @task(id="await-token")
    def await_token(payload: dict) -> dict:
        wait.for_token(payload["token"])
        return {"continued": time.time()}
