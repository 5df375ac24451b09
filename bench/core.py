"""The core benchmark: end-to-end throughput and trigger -> start latency at idle.

    python -m bench.core                      # both stores, default sizes
    python -m bench.core --backend sqlite --runs 500 --latency-runs 50
    python -m bench.core --backend postgresql --in-flight 8

Each store gets a fresh database, a ``triggerfish server`` on a free port of
127.0.0.1 and one ``triggerfish worker`` (concurrency 2); all are stopped and
the database dropped at the end. Throughput is W1's: no-op runs triggered one
request each, sequentially or (``--in-flight``) that many at a time from one
asyncio client. "CPU ms/run" is what the whole machine spent while it was
measured (client, server, database, worker and task processes, the kernel),
divided by the runs: on a machine whose cores are all busy it is what caps
the throughput.
"""

from __future__ import annotations

import argparse
import time

from bench._common import machine_cpu_seconds
from bench._triggerfish import triggerfish_stack
from bench.tf_workloads import latency_at_idle, throughput_in_flight, throughput_one_by_one


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--runs", type=int, default=2000, help="no-op runs for throughput")
    parser.add_argument("--latency-runs", type=int, default=200, help="sequential runs for latency")
    parser.add_argument("--concurrency", type=int, default=2, help="worker slots")
    parser.add_argument(
        "--in-flight", type=int, default=1, help="triggers in flight at once (1: sequential)"
    )
    args = parser.parse_args(argv)
    print(
        f"{'store':<11} {'runs/s':>8} {'CPU ms/run':>10} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'wall s':>7}"
    )
    for backend in args.backend or ["sqlite", "postgresql"]:
        began = time.perf_counter()
        with triggerfish_stack(backend, concurrency=args.concurrency) as stack:
            latency = latency_at_idle(stack, args.latency_runs)
            cpu = machine_cpu_seconds()
            if args.in_flight > 1:
                rate = throughput_in_flight(stack, args.runs, args.in_flight)
            else:
                rate = throughput_one_by_one(stack, args.runs)
            cpu_per_run = (machine_cpu_seconds() - cpu) * 1000 / args.runs
        print(
            f"{backend:<11} {rate:>8.1f} {cpu_per_run:>10.2f} {latency['p50']:>8.2f} "
            f"{latency['p95']:>8.2f} {latency['p99']:>8.2f} {time.perf_counter() - began:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
