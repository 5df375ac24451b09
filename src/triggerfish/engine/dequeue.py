"""Claiming runs for a worker: batched, index-backed, within queue limits.

One claim is one write transaction of a fixed number of statements whatever
the batch size: candidates (``SKIP LOCKED`` on PostgreSQL), the limits of their
queues (row-locked when limited, so servers serialise per limited queue), the
active counts of those queues, then one batched update + attempt + history
insert.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from triggerfish._ids import new_id
from triggerfish.engine.attempts import Attempts
from triggerfish.engine.resources import EngineResources, to_datetime
from triggerfish.store import runs as run_store
from triggerfish.store import workers as worker_store


@dataclass(frozen=True)
class WorkerIdentity:
    id: str
    environment_id: str
    version: str
    task_ids: tuple[str, ...]


class Dequeue:
    #: how many candidates to look at per wanted run: room to step over runs of
    #: queues at their limit without a second round trip
    SCAN_FACTOR = 4

    def __init__(self, res: EngineResources, attempts: Attempts) -> None:
        self.res = res
        self.attempts = attempts

    async def claim(self, worker: WorkerIdentity, limit: int) -> list[Row[Any]]:
        if limit <= 0 or not worker.task_ids:
            return []
        pg = self.res.db.dialect == "postgresql"
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            candidates = await run_store.queued_candidates(
                conn,
                env_id=worker.environment_id,
                task_ids=worker.task_ids,
                version=worker.version,
                now=now,
                limit=max(limit * self.SCAN_FACTOR, 16),
                skip_locked=pg,
            )
            if not candidates:
                return []
            chosen = await self._within_limits(conn, worker.environment_id, candidates, limit, pg)
            lease = now + self.res.settings.heartbeat_timeout
            claims = [
                run_store.Claim(
                    run_id=run_id,
                    attempt_id=new_id("attempt", now),
                    worker_id=worker.id,
                    version=worker.version,
                    lease_expires_at=lease,
                    now=to_datetime(now),
                )
                for run_id in chosen
            ]
            return await run_store.mark_dequeued(conn, claims)

    async def _within_limits(
        self, conn: Any, env_id: str, candidates: list[Row[Any]], limit: int, lock: bool
    ) -> list[str]:
        names = sorted({c.queue_name for c in candidates})
        limits = await worker_store.queue_limits(conn, env_id, names, lock=lock)
        limited = [n for n, (cap, _paused) in limits.items() if cap is not None]
        active = await run_store.active_counts(conn, env_id, limited)
        chosen: list[str] = []
        for cand in candidates:
            cap, paused = limits.get(cand.queue_name, (None, False))
            if paused:
                continue
            if cap is not None:
                if active.get(cand.queue_name, 0) >= cap:
                    continue
                active[cand.queue_name] = active.get(cand.queue_name, 0) + 1
            chosen.append(cand.id)
            if len(chosen) == limit:
                break
        return chosen

    async def claim_or_wait(
        self,
        worker: WorkerIdentity,
        limit: int,
        wait: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[Row[Any]]:
        """Claim now, or hold the call until work arrives or ``wait`` seconds pass.

        Woken by the notifier when a run is queued; also re-checks every
        ``maintenance_interval``. ``gone`` tells whether the caller hung up (a
        stopping worker): then nothing is claimed, and a claim that raced the
        hang-up is handed straight back.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            if gone is not None and await gone():
                return []
            event = self.res.notifier.listener(worker.environment_id)
            rows = await self.claim(worker, limit)
            if rows and gone is not None and await gone():
                await self.attempts.release(
                    [r.current_attempt_id for r in rows], "claimed for a worker that hung up"
                )
                return []
            remaining = deadline - loop.time()
            if rows or remaining <= 0:
                return rows
            await self.res.notifier.wait(
                event, min(remaining, self.res.settings.maintenance_interval)
            )
