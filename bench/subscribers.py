"""Many realtime subscribers on one server: each gets its run's final status.

    python -m bench.subscribers                                  # PostgreSQL, 1,000
    python -m bench.subscribers --backend sqlite --subscribers 1000 --runs 100

A ``triggerfish server`` on a fresh database and one worker (concurrency
``--concurrency``). ``--runs`` runs of the no-op task are triggered while their
queue is paused; ``--subscribers`` server-sent-event streams
(``GET /api/v1/realtime/runs/{id}``, the route ``runs.subscribe`` reads) are
opened, spread evenly over the runs, from this process (httpx, asyncio), all at
once. A subscriber the server turns away (too many first states waiting at
once: a stream of only ``retry:``, with ``Retry-After``) connects again after
that wait, as the SDK's clients and browsers' ``EventSource`` do.
Once every stream has its snapshot the queue is resumed; the worker completes
the runs, and each stream must deliver its run's ``COMPLETED`` change and its
``end``. Printed: the server's RSS (psutil) at idle before the subscribers
connect, with them all connected, and its peak while the runs complete; the
time to connect them all; the time from resuming the queue to the last
subscriber's final event; how many connections were turned away on the
way; and the seconds a canary run (the no-op task on a queue not paused,
triggered as the subscribers start connecting) took to complete: the burst must
not starve the worker's claims and reports. Target: peak < idle + 200 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import psutil

from bench._triggerfish import triggerfish_stack
from triggerfish import Triggerfish

MIB = 1024 * 1024


@dataclass
class Tally:
    snapshots: int = 0
    finals: int = 0
    ended: int = 0
    errors: list[str] = field(default_factory=list)
    last_final: float = 0.0
    total: int = 0
    #: busy answers (turned away, connected again after Retry-After)
    turned_away: int = 0
    #: every subscriber has its snapshot, or has failed
    all_snapshots: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self) -> None:
        if self.snapshots + len(self.errors) >= self.total:
            self.all_snapshots.set()


class PeakRss:
    """Samples a process's RSS in a thread until stopped; the highest seen."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self.process.memory_info().rss)


async def subscriber(http: httpx.AsyncClient, run_id: str, tally: Tally) -> None:
    got_final = False
    try:
        while True:
            async with http.stream(
                "GET", f"/api/v1/realtime/runs/{run_id}", headers={"Accept": "text/event-stream"}
            ) as response:
                # turned away: a stream of only ``retry:`` with Retry-After (api/realtime.py)
                if response.status_code == 200 and "retry-after" in response.headers:
                    tally.turned_away += 1
                    await asyncio.sleep(float(response.headers["retry-after"]))
                    continue
                if response.status_code != 200:
                    tally.errors.append(f"{run_id}: HTTP {response.status_code}")
                    return
                got_final = await follow(response, tally)
                break
    except httpx.HTTPError as e:
        tally.errors.append(f"{run_id}: {type(e).__name__} {e}")
    if not got_final:
        tally.errors.append(f"{run_id}: the stream ended without COMPLETED")
    tally.note()


async def follow(response: httpx.Response, tally: Tally) -> bool:
    """Read one stream to its end; whether it carried the run's COMPLETED."""
    got_final = False
    event = ""
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
            if event == "end":
                tally.ended += 1
                break
        elif line.startswith("data: ") and event == "snapshot":
            tally.snapshots += 1
            tally.note()
        elif line.startswith("data: ") and event == "change":
            change = json.loads(line[6:])
            if change["kind"] == "status" and change["data"]["status"] == "COMPLETED":
                got_final = True
                tally.finals += 1
                tally.last_final = time.perf_counter()
    return got_final


async def measure(
    api_url: str, key: str, server_pid: int, runs: int, subscribers: int, timeout: float
) -> dict[str, float]:
    client = Triggerfish(api_url=api_url, secret_key=key, socket=False)
    server = psutil.Process(server_pid)
    try:
        await client.queues.pause_async("task/noop")
        run_ids = [(await client.tasks.trigger_async("noop", {"i": i})).id for i in range(runs)]
        await asyncio.sleep(1.0)  # let the server settle after the triggers
        idle = server.memory_info().rss
        tally = Tally(total=subscribers)
        limits = httpx.Limits(max_connections=subscribers + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=api_url,
            headers={"Authorization": f"Bearer {key}"},
            limits=limits,
            timeout=httpx.Timeout(timeout, connect=timeout),
        ) as http:
            started = time.perf_counter()
            tasks = [
                asyncio.create_task(subscriber(http, run_ids[i % runs], tally))
                for i in range(subscribers)
            ]
            canary = asyncio.create_task(canary_run(client, timeout))
            await asyncio.wait_for(progress(tally, "connected", tally.all_snapshots), timeout)
            if tally.errors:
                raise RuntimeError(f"subscribing failed: {'; '.join(tally.errors[:5])}")
            connected = time.perf_counter() - started
            canary_s = await canary
            with_all = server.memory_info().rss
            peak = PeakRss(server_pid)
            resumed = time.perf_counter()
            await client.queues.resume_async("task/noop")
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            top = max(peak.stop(), with_all)
        if tally.errors or tally.finals != subscribers:
            shown = "; ".join(tally.errors[:5])
            raise RuntimeError(
                f"{tally.finals} of {subscribers} subscribers got COMPLETED, "
                f"{len(pending)} still waiting; {len(tally.errors)} errors: {shown}"
            )
        return {
            "idle_mib": idle / MIB,
            "connected_mib": with_all / MIB,
            "peak_mib": top / MIB,
            "extra_mib": (top - idle) / MIB,
            "connect_s": connected,
            "all_final_s": tally.last_final - resumed,
            "turned_away": tally.turned_away,
            "canary_s": canary_s,
        }
    finally:
        await client.aclose()


async def canary_run(client: Triggerfish, timeout: float) -> float:
    """Seconds from triggering a run on a queue not paused, while the subscribers
    connect, to its completion: the burst must not starve the worker's calls."""
    started = time.perf_counter()
    handle = await client.tasks.trigger_async("noop", {"canary": True}, queue="canary")
    run = await client.runs.poll_async(handle.id, timeout=timeout, interval=0.1)
    if run.status != "COMPLETED":
        raise RuntimeError(f"the canary run ended {run.status}")
    return time.perf_counter() - started


async def progress(tally: Tally, what: str, until: asyncio.Event) -> None:
    """Wait for ``until``, telling stderr how far it got every 10 seconds."""
    while True:
        try:
            await asyncio.wait_for(until.wait(), 10)
            return
        except TimeoutError:
            print(
                f"  {what}: {tally.snapshots} snapshots, {tally.finals} final, "
                f"{len(tally.errors)} errors of {tally.total}, {tally.turned_away} turned away",
                file=sys.stderr,
                flush=True,
            )


def raise_fd_limit(wanted: int) -> None:
    """This process and the server it spawns need a socket per subscriber."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.subscribers", description=__doc__)
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1000, help="subscribers are spread over them")
    parser.add_argument("--concurrency", type=int, default=4, help="the worker's")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per phase")
    args = parser.parse_args(argv)
    raise_fd_limit(args.subscribers * 2 + 256)
    print(
        f"{'store':<11} {'subs':>5} {'runs':>5} {'idle MiB':>9} {'all-on MiB':>10} "
        f"{'peak MiB':>9} {'+MiB':>6} {'connect s':>10} {'all final s':>12} {'away':>5} "
        f"{'canary s':>9}"
    )
    for backend in args.backend or ["postgresql"]:
        with triggerfish_stack(backend, concurrency=args.concurrency) as stack:
            got = asyncio.run(
                measure(
                    stack.api_url,
                    stack.key,
                    stack.server.pid,
                    args.runs,
                    args.subscribers,
                    args.timeout,
                )
            )
            print(
                f"{backend:<11} {args.subscribers:>5} {args.runs:>5} {got['idle_mib']:>9.1f} "
                f"{got['connected_mib']:>10.1f} {got['peak_mib']:>9.1f} {got['extra_mib']:>6.1f} "
                f"{got['connect_s']:>10.1f} {got['all_final_s']:>12.1f} "
                f"{got['turned_away']:>5.0f} {got['canary_s']:>9.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
