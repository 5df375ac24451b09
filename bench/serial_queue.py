"""A serial queue: runs/s through a queue with a concurrency limit of one.

    python -m bench.serial_queue                     # both stores
    python -m bench.serial_queue --backend sqlite --runs 200

A ``triggerfish server`` (default settings: ``maintenance_interval`` 1 s) and
one worker with four slots on a fresh database of each store. ``--runs`` no-op
runs of ``noop-serial`` (``bench/serial_project/``, its queue limited to
one) are batch-triggered at once; runs/s is their number over the
time from the trigger to the last one done. Only one may hold a slot, so the
figure is the hand-over from a finished run to the next one: the worker's
claim for it waits on the full queue until the finished run's report wakes it.
"""

from __future__ import annotations

import argparse
import time

from bench._common import BENCH_DIR, median
from bench._triggerfish import Stack, triggerfish_stack
from bench.tf_workloads import client_for, wait_all_finished

#: a project of its own: a limited queue would constrain the core benchmark's environment
SERIAL_PROJECT = BENCH_DIR / "serial_project"


def measure(stack: Stack, runs: int) -> float:
    client = client_for(stack)
    try:
        start = time.perf_counter()
        items = [{"task": "noop-serial", "payload": {"i": i}} for i in range(runs)]
        client.tasks.batch_trigger(items)
        done = wait_all_finished(client, runs, timeout=max(60.0, runs * 2.0))
    finally:
        client.close()
    return runs / (done - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serial_queue", description=__doc__)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"{'store':<11} {'rep':>3} {'runs/s':>8}")
    for backend in args.backend or ["sqlite", "postgresql"]:
        with triggerfish_stack(backend, concurrency=4, project=SERIAL_PROJECT) as stack:
            measure(stack, 5)  # warm-up
            got = []
            for rep in range(args.reps):
                got.append(measure(stack, args.runs))
                print(f"{backend:<11} {rep + 1:>3} {got[-1]:>8.1f}", flush=True)
            print(f"{backend:<11} {'med':>3} {median(got):>8.1f}", flush=True)


if __name__ == "__main__":
    main()
