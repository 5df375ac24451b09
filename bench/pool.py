"""``python -m bench.pool``: the task-process pool's per-attempt overhead, no server.

Starts an ``ExecutorPool`` of one warm process on ``bench/project`` and runs
the no-op task (whose body returns the wall-clock time it began) again and
again, one at a time. Prints medians and 90th percentiles of

- start: from the ``pool.run`` call to the task body's first line;
- round trip: the whole ``pool.run`` call, report included.

Options: ``--runs N`` (default 500), ``--warmup N`` (default 50),
``--uvloop`` to run the parent on uvloop as the worker does when it is installed,
``--gap S`` to leave the pool idle S seconds between runs (as a worker at idle).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from triggerfish.worker.discovery import ProjectConfig
from triggerfish.worker.executor import ExecutorPool, Job

PROJECT = Path(__file__).resolve().parent / "project"


def _job() -> Job:
    return Job(
        run_id=f"run_{uuid.uuid4().hex}",
        attempt_id=f"att_{uuid.uuid4().hex}",
        attempt_number=1,
        task_id="noop",
        payload={},
        tags=[],
        environment={"id": "env_dev", "slug": "dev"},
        machine="small-1x",
        max_duration=None,
    )


async def _measure(runs: int, warmup: int, gap: float) -> tuple[list[float], list[float]]:
    pool = ExecutorPool(ProjectConfig.load(PROJECT), 1, lambda _a, _r: None)
    await pool.start()
    starts: list[float] = []
    trips: list[float] = []
    try:
        for i in range(warmup + runs):
            if gap:
                await asyncio.sleep(gap)
            job = _job()
            t0 = time.time()
            report: dict[str, Any] = await pool.run(job)
            t1 = time.time()
            if not report.get("ok"):
                raise RuntimeError(f"no-op run failed: {report}")
            if i >= warmup:
                starts.append(report["output"]["started"] - t0)
                trips.append(t1 - t0)
    finally:
        await pool.close()
    return starts, trips


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
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.install()
    starts, trips = asyncio.run(_measure(args.runs, args.warmup, args.gap))
    print(f"{args.runs} no-op runs on one warm task process")
    print(_line("start", starts))
    print(_line("round trip", trips))


if __name__ == "__main__":
    main()
