"""Stream chunk latency: from a task emitting a chunk to a live subscriber receiving it.

    python -m bench.stream_latency                          # both stores
    python -m bench.stream_latency --backend sqlite --chunks 200 --gap 0.02

A ``triggerfish server`` and one worker on a fresh database of each store; a
task (``bench/project/tasks/stream_tasks.py``) pipes ``--chunks`` chunks with
``streams.pipe``, one every ``--gap`` seconds, each stamped with the wall-clock
time it was emitted. A client subscribed to the run (``runs.subscribe``, the
SSE route) records when each ``stream`` event arrives; latency = arrival -
stamp (same machine, same clock). p50/p95/p99 in ms. Target: p50 < 50 ms.
"""

from __future__ import annotations

import argparse
import time

from bench._common import latency_summary
from bench._triggerfish import triggerfish_stack
from triggerfish import Triggerfish


def measure(api_url: str, key: str, chunks: int, gap: float) -> dict[str, float]:
    client = Triggerfish(api_url=api_url, secret_key=key, socket=False)
    try:
        samples: list[float] = []
        handle = client.tasks.trigger("stream-stamped", {"n": chunks, "gap": gap})
        for event in client.runs.subscribe(handle.id):
            if event.kind == "stream":
                samples.append((time.time() - float(event.data["chunk"]["t"])) * 1000)
        if len(samples) != chunks:
            raise RuntimeError(f"received {len(samples)} chunks of {chunks}")
        return latency_summary(samples)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_latency", description=__doc__)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between chunks")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'store':<11} {'rep':>3} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for backend in args.backend or ["sqlite", "postgresql"]:
        with triggerfish_stack(backend) as stack:
            measure(stack.api_url, stack.key, 10, args.gap)  # warm-up
            for rep in range(args.reps):
                got = measure(stack.api_url, stack.key, args.chunks, args.gap)
                print(
                    f"{backend:<11} {rep + 1:>3} {got['p50']:>8.2f} {got['p95']:>8.2f} "
                    f"{got['p99']:>8.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
