"""Failover times: how long a worker and an SDK caller take to move to the second
server when the first one dies (kill -9) or hangs (SIGSTOP).

    python -m bench.failover                       # 5 repetitions of each fault
    python -m bench.failover --reps 10 --faults hang

Two ``triggerfish server`` processes on one fresh PostgreSQL database: B lives
through the whole run; each repetition starts a new A, a worker given
``A,B`` (``--api-url``) and an SDK client given ``A,B``, and checks that both
are on A (a no-op run through the client, completed by the worker). Then the
fault hits A, and at once:

- a no-op run is triggered through a client that knows only B; the *worker*
  figure is from the fault to the moment that run's task began (its own
  ``time.time()``), so it counts the worker noticing A is gone, moving to B
  and claiming there;
- the A,B client triggers a no-op run; the *SDK* figure is from the fault to
  the moment that call returned (it had to notice A is gone and send the call
  to B).

A then gets SIGKILL (a stopped one too) and the worker is stopped. Printed per
fault and side: the median, p95 (linear between ranks), min and max over the
repetitions. The SDK client uses its defaults (client socket, ``timeout`` 30 s)
unless ``--sdk-timeout`` says otherwise; the worker always does.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench._common import BenchError, median, percentile, stop_process
from bench._triggerfish import Stack, triggerfish_stack
from triggerfish import Triggerfish

#: how each fault is dealt to server A
FAULTS: dict[str, signal.Signals] = {"kill": signal.SIGKILL, "hang": signal.SIGSTOP}


@dataclass
class Figures:
    """Seconds from the fault to the move, per repetition."""

    worker: list[float] = field(default_factory=list)
    sdk: list[float] = field(default_factory=list)


def one_repetition(stack: Stack, fault: str, sdk_timeout: float, timeout: float) -> Figures:
    first, first_url = stack.start_server()
    both = f"{first_url},{stack.api_url}"
    client = Triggerfish(api_url=both, secret_key=stack.key, timeout=sdk_timeout)
    only_second = Triggerfish(api_url=stack.api_url, secret_key=stack.key)
    try:
        stack.start_worker(concurrency=2, api_url=both)
        warm = client.tasks.trigger("noop", {})
        if client.runs.poll(warm.id, timeout=timeout, interval=0.05).status != "COMPLETED":
            raise BenchError("the warm-up run did not complete")
        if client._transport.servers.current != first_url:
            raise BenchError("the client is not on the first server before the fault")
        return _after_fault(first, fault, client, only_second, timeout)
    finally:
        stop_process(first)  # SIGKILL reaches a stopped process too
        stack.stop_workers()
        client.close()
        only_second.close()


def _after_fault(
    first: subprocess.Popen[bytes],
    fault: str,
    client: Triggerfish,
    only_second: Triggerfish,
    timeout: float,
) -> Figures:
    at = time.time()
    os.killpg(first.pid, FAULTS[fault])
    for_worker = only_second.tasks.trigger("noop", {})
    client.tasks.trigger("noop", {})
    sdk = time.time() - at
    run = only_second.runs.poll(for_worker.id, timeout=timeout, interval=0.05)
    if run.status != "COMPLETED":
        raise BenchError(f"the run after the fault ended {run.status}")
    return Figures(worker=[float(run.output["started"]) - at], sdk=[sdk])


def summary(values: list[float]) -> str:
    return (
        f"{median(values):>8.2f} {percentile(values, 95):>8.2f} "
        f"{min(values):>8.2f} {max(values):>8.2f}"
    )


def measure(
    faults: list[str], reps: int, sdk_timeout: float, timeout: float, say: Callable[[str], None]
) -> dict[str, Figures]:
    got = {fault: Figures() for fault in faults}
    with triggerfish_stack("postgresql", workers=0) as stack:
        for fault in faults:
            for rep in range(reps):
                one = one_repetition(stack, fault, sdk_timeout, timeout)
                got[fault].worker += one.worker
                got[fault].sdk += one.sdk
                worker, sdk = one.worker[0], one.sdk[0]
                say(f"  {fault} {rep + 1}/{reps}: worker {worker:.2f} s, SDK {sdk:.2f} s")
    return got


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--reps", type=int, default=5, help="repetitions of each fault")
    parser.add_argument(
        "--faults", default="kill,hang", help="comma-separated: kill (kill -9), hang (SIGSTOP)"
    )
    parser.add_argument("--sdk-timeout", type=float, default=30.0, help="the client's timeout=")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per wait, at most")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in faults if f not in FAULTS]
    if unknown or args.reps < 1:
        parser.error(f"unknown fault(s) {unknown}" if unknown else "--reps must be at least 1")
    got = measure(faults, args.reps, args.sdk_timeout, args.timeout, lambda s: print(s, flush=True))
    heads = ("median s", "p95 s", "min s", "max s")
    print(f"{'fault':<6} {'who':<7} {'reps':>4} " + " ".join(f"{h:>8}" for h in heads))
    for fault in faults:
        for who, values in (("worker", got[fault].worker), ("SDK", got[fault].sdk)):
            print(f"{fault:<6} {who:<7} {len(values):>4} {summary(values)}", flush=True)


if __name__ == "__main__":
    main()
