"""The stream benchmark's task: chunks stamped with the wall-clock time they are emitted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from triggerfish import streams, task


def _stamped(n: int, gap: float) -> Iterator[dict[str, float]]:
    for i in range(n):
        time.sleep(gap)
        yield {"i": i, "t": time.time()}


@task(id="stream-stamped")
def stream_stamped(payload: dict[str, Any]) -> int:
    chunks = streams.pipe("bench", _stamped(int(payload["n"]), float(payload["gap"])))
    return len(chunks)
