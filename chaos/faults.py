"""The faults, each injected into the running cluster and followed by a restart.

Every fault returns a :class:`~chaos.check.FaultRecord`: when it was injected,
when the replacement was started, the recovery time (from that restart until
the restarted part made runs progress again, seen in the side-effect table)
and the pids it ended, whose attempts may legitimately be redone.

- ``worker-kill``: ``kill -9`` of a worker's process group (the worker and its
  task processes, as a machine loss); restarted at once. Recovery: until the
  new worker starts an attempt.
- ``task-kill``: ``kill -9`` of one task process in the middle of an attempt;
  the worker replaces it. Recovery: from the kill until that run's next
  attempt starts.
- ``server-kill``: ``kill -9`` of a server; restarted on the same port (its
  worker knows one URL). Recovery: until that server's worker starts an attempt.
- ``worker-sigterm``: SIGTERM of a worker (graceful: its attempts get the
  grace period, the rest is handed back); restarted once it exited.
- ``pg-outage``: ``kill -9`` of PostgreSQL (postmaster and backends), down for
  longer than the heartbeat timeout, then started again (crash recovery).
  Recovery: until every worker has started an attempt again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from chaos._procs import ChaosError
from chaos.check import FaultRecord
from chaos.cluster import Cluster
from chaos.effects import EffectsReader
from chaos.postgres import PgInstance

T = TypeVar("T")
#: longest wait for a restarted part to make progress
RECOVERY_LIMIT = 180.0


@dataclass
class Target:
    """What the faults act on."""

    cluster: Cluster
    pg: PgInstance
    reader: EffectsReader
    #: the database stays down this long in ``pg-outage``
    outage: float


async def until(cond: Callable[[], Awaitable[T | None]], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def _ready_server(t: Target, index: int) -> None:
    async def ready() -> bool:
        return await asyncio.to_thread(t.cluster.server_ready, index)

    await until(ready, 120, f"server {index} to answer")


async def _ready_worker(t: Target, index: int) -> None:
    worker = t.cluster.workers[index]

    async def ready() -> bool:
        if worker.proc.poll() is not None:
            raise ChaosError(f"worker {index} exited:\n{worker.log.read_text()[-3000:]}")
        return "serving" in worker.log.read_text(errors="replace")

    await until(ready, 120, f"worker {index} to serve")


async def _recovery(
    since: float, first: Callable[[], Awaitable[float | None]], record: FaultRecord
) -> FaultRecord:
    """Set ``record.recovery``: seconds from ``since`` to the first progress."""
    try:
        at = await until(first, RECOVERY_LIMIT, f"progress after {record.name}")
        record.recovery = max(0.0, at - since)
    except ChaosError as exc:
        record.note = str(exc)
    return record


async def worker_kill(t: Target, index: int) -> FaultRecord:
    record = FaultRecord(f"kill -9 worker {index}", time.time())
    record.ended_pids |= set(t.cluster.kill_worker(index))
    record.restarted_at = time.time()
    worker = t.cluster.restart_worker(index)
    await _ready_worker(t, index)
    return await _recovery(
        record.restarted_at,
        lambda: t.reader.first_start_after(record.restarted_at or 0, worker.pid),
        record,
    )


async def task_kill(t: Target, index: int) -> FaultRecord:
    worker = t.cluster.workers[index]

    async def busy() -> tuple[int, str] | None:
        alive = set(worker.task_processes())
        open_ = await t.reader.open_attempts(worker.pid, time.time() - 120)
        return next(((pid, run) for pid, run in open_ if pid in alive), None)

    pid, run_id = await until(busy, 60, f"a busy task process on worker {index}")
    record = FaultRecord(f"kill -9 task process (worker {index})", time.time())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    record.ended_pids.add(pid)
    record.restarted_at = record.at  # the worker replaces it by itself
    return await _recovery(
        record.at, lambda: t.reader.first_start_of_run_after(run_id, record.at), record
    )


async def server_kill(t: Target, index: int) -> FaultRecord:
    record = FaultRecord(f"kill -9 server {index}", time.time())
    record.note = f"pid {t.cluster.kill_server(index)}"
    record.restarted_at = time.time()
    t.cluster.restart_server(index)
    await _ready_server(t, index)
    served = [w for w in t.cluster.workers if w.server == index]
    if not t.cluster.settings.failover:
        # a worker that knows one URL can renew no lease until its server is back
        record.cut_off = {w.pid for w in served}
        record.cut_off_until = time.time() + 2 * t.cluster.settings.heartbeat_timeout

    async def first() -> float | None:
        times = [await t.reader.first_start_after(record.at, w.pid) for w in served]
        return None if None in times else max(t for t in times if t is not None)

    return await _recovery(record.restarted_at, first, record)


async def worker_sigterm(t: Target, index: int) -> FaultRecord:
    worker = t.cluster.workers[index]
    record = FaultRecord(f"SIGTERM worker {index}", time.time())
    record.ended_pids |= {worker.pid, *worker.task_processes()}
    worker.proc.send_signal(signal.SIGTERM)

    async def exited() -> bool:
        return worker.proc.poll() is not None

    await until(exited, t.cluster.settings.grace + 60, f"worker {index} to exit on SIGTERM")
    t.cluster.kill_worker(index)  # anything of its group left behind
    record.restarted_at = time.time()
    new = t.cluster.restart_worker(index)
    await _ready_worker(t, index)
    return await _recovery(
        record.restarted_at,
        lambda: t.reader.first_start_after(record.restarted_at or 0, new.pid),
        record,
    )


async def pg_outage(t: Target, index: int) -> FaultRecord:
    del index
    record = FaultRecord(f"kill -9 PostgreSQL, {t.outage:.0f} s down", time.time())
    await t.reader.close()
    t.pg.crash()
    await asyncio.sleep(max(0.0, record.at + t.outage - time.time()))
    record.restarted_at = time.time()
    t.pg.launch()

    async def accepting() -> bool:
        return await asyncio.to_thread(t.pg.ready)

    await until(accepting, 120, "PostgreSQL to accept connections after the crash")
    workers = list(t.cluster.workers)

    async def first() -> float | None:
        times = [await t.reader.first_start_after(record.restarted_at or 0, w.pid) for w in workers]
        return None if None in times else max(t for t in times if t is not None)

    return await _recovery(record.restarted_at, first, record)


Fault = Callable[[Target, int], Awaitable[FaultRecord]]
#: the order of one round: (fault, which worker or server it hits)
ROUND: list[tuple[Fault, int]] = [
    (worker_kill, 0),
    (task_kill, 1),
    (server_kill, 0),
    (worker_sigterm, 1),
    (pg_outage, 0),
]
