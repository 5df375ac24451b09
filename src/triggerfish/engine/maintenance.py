"""Background sweeps every server runs: reclaim dead workers' runs, start due
delayed runs, expire runs whose TTL passed, fire due schedule slots.

Safe on any number of replicas: each sweep reads candidates, then moves each with
a guarded transition; a replica that loses the race matches no row.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import to_datetime
from triggerfish.engine.attempts import Attempts, Failure
from triggerfish.engine.enqueue import fair_tag
from triggerfish.engine.failure_log import FailureLog
from triggerfish.engine.resources import EngineResources
from triggerfish.engine.schedules import Schedules
from triggerfish.engine.waitpoints import Waitpoints
from triggerfish.errors import StaleTransition, StoreUnavailable
from triggerfish.store import changes as change_store
from triggerfish.store import events as event_store
from triggerfish.store import queues as queue_store
from triggerfish.store import retention as retention_store
from triggerfish.store import runs as run_store

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
#: runs deleted per environment and sweep (each with its logs, journal, attempts)
RETENTION_BATCH = 100


class Maintenance:
    def __init__(
        self,
        res: EngineResources,
        attempts: Attempts,
        schedules: Schedules,
        waitpoints: Waitpoints,
    ) -> None:
        self.res = res
        #: attempts reclaimed from lost workers since this server started (metrics)
        self.lost_leases = 0
        self.attempts = attempts
        self.schedules = schedules
        self.waitpoints = waitpoints
        # the purges run every ``purge_interval``, not every sweep: on a busy
        # store they are a scan and a transaction each that find nothing most times
        self._next_purge = float("-inf")
        #: failures other than an unreachable store, logged sparingly
        self._failures = FailureLog(log, "maintenance sweep")

    async def sweep(self) -> dict[str, int]:
        """One pass of every sweep; returns how many runs each one moved."""
        if self.res.health.is_down:
            await self.res.db.ping()  # raises while the store is still away
            self.res.health.came_back(self.res.clock.now(), self.res.settings.heartbeat_timeout)
        return {
            "reclaimed": await self.reclaim_expired_leases(),
            "promoted": await self.promote_delayed(),
            "expired": await self.expire_ttl(),
            "scheduled": await self.schedules.fire_due(),
            "waits_resolved": await self.waitpoints.resolve_due(),
            "claims_forgotten": await self.forget_old_claims(),
            **await self.purges(),
        }

    async def purges(self) -> dict[str, int]:
        """The purges, when due: every ``purge_interval``, or at once again while
        the last pass filled a batch (there is more to delete)."""
        now = self.res.clock.now()
        if now < self._next_purge:
            return {"kv_purged": 0, "changes_forgotten": 0, "runs_purged": 0}
        runs_purged, retention_full = await self.purge_retention()
        done = {
            "kv_purged": await self.purge_expired_kv(),
            "changes_forgotten": await self.forget_old_changes(),
            "runs_purged": runs_purged,
        }
        full = (
            retention_full
            or done["kv_purged"] >= SWEEP_BATCH
            or done["changes_forgotten"] >= SWEEP_BATCH
        )
        self._next_purge = now if full else now + self.res.settings.purge_interval
        return done

    async def forget_old_changes(self) -> int:
        """Delete a bounded batch of changes older than ``changes_retention``."""
        before = self.res.clock.now() - self.res.settings.changes_retention
        async with self.res.db.write() as conn:
            return await change_store.delete_before(conn, before, SWEEP_BATCH)

    async def retention(self, env_id: str) -> tuple[int, bool]:
        """Days ``env_id`` keeps finished runs, and whether it is the environment's own."""
        async with self.res.db.read() as conn:
            days = dict(await retention_store.retention_days(conn)).get(env_id)
        return (days, True) if days else (self.res.settings.retention_days, False)

    async def set_retention(self, env_id: str, days: int | None) -> None:
        """Keep ``env_id``'s finished runs ``days`` days (None: the server's default)."""
        async with self.res.db.write() as conn:
            await retention_store.set_retention_days(conn, env_id, days)

    async def purge_retention(self) -> tuple[int, bool]:
        """Delete a bounded batch of each environment's runs (and all that hangs off
        them), events, webhook deliveries and alert deliveries older than its
        retention (``store/retention.py``); how many runs went, and whether any
        batch was full (there is more to delete)."""
        now = self.res.clock.now()
        purged = 0
        full = False
        async with self.res.db.read() as conn:
            envs = await retention_store.retention_days(conn)
        for env_id, days in envs:
            before = to_datetime(now - (days or self.res.settings.retention_days) * 86400)
            async with self.res.db.write() as conn:
                runs = await retention_store.purge_runs(conn, env_id, before, RETENTION_BATCH)
                events = await retention_store.purge_events(conn, env_id, before, SWEEP_BATCH)
                aged = [
                    await retention_store.purge_aged(conn, table, env_id, before, SWEEP_BATCH)
                    for table in retention_store.AGED_TABLES
                ]
            purged += runs
            full |= runs >= RETENTION_BATCH or max([events, *aged]) >= SWEEP_BATCH
        return purged, full

    async def purge_expired_kv(self) -> int:
        """Delete a bounded batch of expired KV entries (reads already hide them)."""
        async with self.res.db.write() as conn:
            return await event_store.kv_purge_expired(conn, self.res.clock.now(), SWEEP_BATCH)

    async def reclaim_expired_leases(self) -> int:
        """Runs whose worker stopped heartbeating: retry as a new attempt, or CRASHED."""
        # after a database outage, leases that ran out meanwhile get a grace
        # (engine/health.py); the transitions below check the same cutoff
        cutoff = self.res.health.lease_cutoff(
            self.res.clock.now(), self.res.settings.heartbeat_timeout
        )
        async with self.res.db.read() as conn:
            stale = await run_store.expired_leases(conn, cutoff, SWEEP_BATCH)
        moved = 0
        never_started = [r.current_attempt_id for r in stale if r.status == RunStatus.DEQUEUED]
        if never_started:
            # claimed but never started: no user code ran, so no retry is spent
            moved += len(
                await self.attempts.release(
                    never_started, "claimed, never started; worker lost", lease_before=cutoff
                )
            )
        for row in stale:
            if row.status == RunStatus.DEQUEUED:
                continue
            failure = Failure(
                kind="CRASH",
                error={
                    "name": "WorkerLost",
                    "message": (
                        "the worker running this attempt stopped sending heartbeats for "
                        f"{self.res.settings.heartbeat_timeout:g}s (it crashed, was killed "
                        "or lost its connection)"
                    ),
                    "stack_trace": "",
                },
            )
            try:
                await self.attempts.fail(
                    row.id, row.current_attempt_id, failure, lease_before=cutoff
                )
                moved += 1
            except StaleTransition:
                pass  # the worker reported, or another replica reclaimed it, first
        if moved:
            self.lost_leases += moved
            log.warning("reclaimed %d run(s) from lost workers", moved)
        return moved

    async def promote_delayed(self) -> int:
        """Queue delayed runs that are due; each joins the fair order as a new arrival."""
        now = self.res.clock.now()
        envs: dict[str, int] = {}
        async with self.res.db.write() as conn:
            for row in await run_store.due_delayed(conn, now, SWEEP_BATCH):
                tag = await fair_tag(
                    conn, self.res, row.environment_id, row.queue_name, row.concurrency_key
                )
                moved = await run_store.transition(
                    conn,
                    row.id,
                    to=RunStatus.QUEUED,
                    now=to_datetime(now),
                    reason="delay passed",
                    values={"order_key": tag - row.priority},
                )
                if moved is not None:
                    envs[moved.environment_id] = envs.get(moved.environment_id, 0) + 1
        for env_id in envs:
            await self.res.notifier.notify(env_id)
        return sum(envs.values())

    async def forget_old_claims(self) -> int:
        """Drop rate-window records older than the longest window of any queue."""
        async with self.res.db.write() as conn:
            period = await queue_store.longest_rate_period(conn)
            before = self.res.clock.now() - (period or 0.0)
            return await queue_store.forget_claims_before(conn, before)

    async def expire_ttl(self) -> int:
        now = self.res.clock.now()
        values = {"expired_at": to_datetime(now), "finished_at": to_datetime(now)}
        woken: set[str] = set()
        async with self.res.db.write() as conn:
            due = await run_store.past_ttl(conn, now, SWEEP_BATCH)
            envs = await self._move_all(
                conn, due, RunStatus.EXPIRED, "ttl passed", values, woken=woken
            )
        await self.waitpoints.wake(woken)
        return sum(envs.values())

    async def _move_all(
        self,
        conn: Any,
        run_ids: list[str],
        to: RunStatus,
        reason: str,
        values: dict[str, Any],
        *,
        woken: set[str] | None = None,
    ) -> dict[str, int]:
        now = to_datetime(self.res.clock.now())
        envs: dict[str, int] = {}
        for run_id in run_ids:
            moved = await run_store.transition(
                conn, run_id, to=to, now=now, reason=reason, values=values
            )
            if moved is not None:
                envs[moved.environment_id] = envs.get(moved.environment_id, 0) + 1
                if woken is not None:  # an expired child resolves its parent's wait
                    await self.waitpoints.on_run_finished(conn, moved, woken)
        return envs

    async def tick(self) -> dict[str, int] | None:
        """One sweep as the loop runs it: a store outage is noted (one log line
        per outage, engine/health.py), any other failure logged; None if it failed."""
        try:
            done = await self.sweep()
        except StoreUnavailable as exc:
            self.res.health.went_down(self.res.clock.now(), str(exc))
        except Exception as exc:
            self._failures.failed(self.res.clock.now(), exc)
        else:
            self._failures.succeeded(self.res.clock.now())
            return done
        return None

    async def run_forever(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.res.settings.maintenance_interval)
