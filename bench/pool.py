"""``python -m bench.pool``: the task-process pool's per-attempt overhead, no server.

Starts an ``ExecutorPool`` of warm processes on ``bench/project`` and runs
the no-op task (whose body returns the wall-clock time it began) again and
again, one client per process, each waiting for its run before the next.
Prints medians and 90th percentiles of

- start: from the ``pool.run`` call to the task body's first line;
- round trip: the whole ``pool.run`` call, report included;

and the runs per second of all clients together.

Options: ``--runs N`` (default 500), ``--warmup N`` (default 50),
``--uvloop`` to run the parent on uvloop as the worker does when it is installed,
``--gap S`` to leave the pool idle S seconds between runs (as a worker at idle),
``--slots N`` for N processes and N clients at once (default 1).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path

from triggerfish._domain.attempts import EnvironmentRef, Job, Succeeded
from triggerfish.worker.discovery import ProjectConfig
from triggerfish.worker.executor import ExecutorPool

PROJECT = Path(__file__).resolve().parent / "project"


def _job() -> Job:
    return Job(
        run_id=f"run_{uuid.uuid4().hex}",
        attempt_id=f"att_{uuid.uuid4().hex}",
        attempt_number=1,
        task_id="noop",
        payload={},
        tags=(),
        environment=EnvironmentRef("env_dev", "dev"),
        machine="small-1x",
        max_duration=None,
    )


async def _client(
    pool: ExecutorPool, runs: int, warmup: int, gap: float, out: tuple[list[float], list[float]]
) -> None:
    """Run the no-op ``warmup + runs`` times in a row, timing the last ``runs``."""
    for i in range(warmup + runs):
        if gap:
            await asyncio.sleep(gap)
        job = _job()
        t0 = time.time()
        outcome = await pool.run(job)
        t1 = time.time()
        if not isinstance(outcome, Succeeded):
            raise RuntimeError(f"no-op run failed: {outcome}")
        if i >= warmup:
            out[0].append(outcome.output["started"] - t0)
            out[1].append(t1 - t0)


async def _measure(
    runs: int, warmup: int, gap: float, slots: int
) -> tuple[list[float], list[float], float]:
    """Start and round-trip times, and runs per second, with one client per slot."""
    pool = ExecutorPool(ProjectConfig.load(PROJECT), slots, lambda _a, _r: None)
    await pool.start()
    times: tuple[list[float], list[float]] = ([], [])
    try:
        await asyncio.gather(*(_client(pool, warmup, 0, 0.0, ([], [])) for _ in range(slots)))
        began = time.perf_counter()
        await asyncio.gather(*(_client(pool, runs // slots, 0, gap, times) for _ in range(slots)))
        elapsed = time.perf_counter() - began
    finally:
        await pool.close()
    return times[0], times[1], len(times[0]) / elapsed


def _line(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[int(len(ms) * 0.9)]
    return f"{name:<11} median {statistics.median(ms):7.3f} ms   p90 {p90:7.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--gap", type=float, default=0.0)
    parser.add_argument("--slots", type=int, default=1)
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    starts, trips, rate = asyncio.run(_measure(args.runs, args.warmup, args.gap, args.slots))
    print(f"{len(starts)} no-op runs, {args.slots} warm task process(es), one client each")
    print(_line("start", starts))
    print(_line("round trip", trips))
    print(f"throughput  {rate:7.0f} runs/s")


if __name__ == "__main__":
    main()
