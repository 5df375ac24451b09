"""Queues at run time: list, inspect, pause/resume, override limits, the
environment-wide limit, and why a waiting run is not running yet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from triggerfish._domain.records import QueueRecord, RunRecord, WorkerRecord
from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import iso_millis, to_datetime
from triggerfish.engine.dequeue import load_limits
from triggerfish.engine.limits import Blocked, Limits
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import QueueNotFound, UserError
from triggerfish.store import queues as queue_store
from triggerfish.store import runs as run_store
from triggerfish.store import workers as worker_store

QueueType = Literal["id", "task", "custom"]


@dataclass(frozen=True)
class QueueRef:
    """How a caller names a queue (WIRE.md §12): its id, a task's own queue, or a name.

    Example: ``QueueRef("task", "send-email")`` is the queue ``task/send-email``.
    """

    type: QueueType
    value: str

    def describe(self) -> str:
        return {"id": f"with id {self.value!r}", "task": f"of task {self.value!r}"}.get(
            self.type, repr(self.value)
        )


@dataclass(frozen=True)
class QueueInfo:
    queue: QueueRecord
    running: int
    queued: int

    @property
    def limit(self) -> int | None:
        override = self.queue.concurrency_limit_override
        value = override if override is not None else self.queue.concurrency_limit
        return int(value) if value is not None else None

    @property
    def kind(self) -> str:
        return "task" if self.queue.name.startswith("task/") else "custom"


@dataclass(frozen=True)
class WaitReason:
    """Why a run that has not started is waiting. ``until`` is an epoch time, if known."""

    code: str
    message: str
    until: float | None = None


def _when(epoch: float) -> str:
    return to_datetime(epoch).strftime("%Y-%m-%dT%H:%M:%SZ")


class Queues:
    def __init__(self, res: EngineResources) -> None:
        self.res = res

    # -- reading ------------------------------------------------------------------------

    async def page(self, env_id: str, *, page: int, per_page: int) -> tuple[list[QueueInfo], int]:
        async with self.res.db.read() as conn:
            found, total = await queue_store.list_queues(
                conn, env_id, offset=(page - 1) * per_page, limit=per_page
            )
            counts = await queue_store.queue_counts(conn, env_id, [q.name for q in found])
        return [QueueInfo(q, *counts.get(q.name, (0, 0))) for q in found], total

    async def retrieve(self, env_id: str, ref: QueueRef) -> QueueInfo:
        async with self.res.db.read() as conn:
            queue = await self._find(conn, env_id, ref)
            counts = await queue_store.queue_counts(conn, env_id, [queue.name])
        return QueueInfo(queue, *counts[queue.name])

    async def _find(self, conn: Any, env_id: str, ref: QueueRef) -> QueueRecord:
        if ref.type == "id":
            queue = await queue_store.find_queue(conn, env_id, queue_id=ref.value)
        else:
            name = f"task/{ref.value}" if ref.type == "task" else ref.value
            queue = await queue_store.find_queue(conn, env_id, name=name)
        if queue is None:
            raise QueueNotFound(ref.describe())
        return queue

    # -- changing -------------------------------------------------------------------------

    async def _update(self, env_id: str, ref: QueueRef, **values: Any) -> QueueInfo:
        async with self.res.db.write() as conn:
            queue = await self._find(conn, env_id, ref)
            queue = await queue_store.update_queue(conn, queue.id, **values)
            counts = await queue_store.queue_counts(conn, env_id, [queue.name])
        # a resumed queue, a raised limit: waiting workers may now claim
        await self.res.notifier.notify(env_id)
        return QueueInfo(queue, *counts[queue.name])

    async def pause(self, env_id: str, ref: QueueRef) -> QueueInfo:
        """Stop starting runs of the queue; it keeps accepting new ones."""
        return await self._update(env_id, ref, paused=True)

    async def resume(self, env_id: str, ref: QueueRef) -> QueueInfo:
        return await self._update(env_id, ref, paused=False)

    async def override_limit(self, env_id: str, ref: QueueRef, limit: int) -> QueueInfo:
        """Replace the queue's declared concurrency limit until :meth:`reset_limit`."""
        if limit < 0:
            raise UserError("concurrencyLimit: must be 0 or more")
        now = to_datetime(self.res.clock.now())
        return await self._update(env_id, ref, concurrency_limit_override=limit, overridden_at=now)

    async def reset_limit(self, env_id: str, ref: QueueRef) -> QueueInfo:
        """Go back to the limit declared in code."""
        return await self._update(env_id, ref, concurrency_limit_override=None, overridden_at=None)

    async def set_rate_limit(
        self, env_id: str, ref: QueueRef, count: int | None, period: float | None
    ) -> QueueInfo:
        """At most ``count`` starts per ``period`` seconds; ``None`` removes the limit."""
        if (count is None) != (period is None):
            raise UserError("rateLimit: give both limit and period, or neither")
        if count is not None and (count < 1 or not period or period <= 0):
            raise UserError("rateLimit: limit must be >= 1 and period > 0 seconds")
        return await self._update(env_id, ref, rate_limit_count=count, rate_limit_period=period)

    async def set_key_limit(self, env_id: str, ref: QueueRef, limit: int | None) -> QueueInfo:
        """Slots each concurrency key may hold (``None``: the queue's limit)."""
        if limit is not None and limit < 0:
            raise UserError("concurrencyKeyLimit: must be 0 or more")
        return await self._update(env_id, ref, concurrency_key_limit=limit)

    async def environment_limit(self, env_id: str) -> tuple[int | None, int]:
        """The environment-wide concurrency limit and how many runs hold a slot now."""
        async with self.res.db.read() as conn:
            limit = await queue_store.environment_limit(conn, env_id)
            running = await run_store.active_total(conn, env_id)
        return limit, running

    async def set_environment_limit(self, env_id: str, limit: int | None) -> None:
        if limit is not None and limit < 0:
            raise UserError("concurrencyLimit: must be 0 or more (or null for no limit)")
        async with self.res.db.write() as conn:
            await queue_store.set_environment_limit(conn, env_id, limit)
        await self.res.notifier.notify(env_id)

    async def reset_environment_limit(self, env_id: str) -> None:
        """Drop a limit set at run time: the project configuration's default applies again."""
        async with self.res.db.write() as conn:
            await queue_store.reset_environment_limit(conn, env_id)
        await self.res.notifier.notify(env_id)

    # -- why is it not running ----------------------------------------------------------

    async def explain(self, env_id: str, rows: list[RunRecord]) -> dict[str, WaitReason]:
        """A reason for every run in ``rows`` that waits to start (others are left out)."""
        waiting = [
            r
            for r in rows
            if r.status
            in (RunStatus.QUEUED.value, RunStatus.DELAYED.value, RunStatus.PENDING_VERSION.value)
        ]
        if not waiting:
            return {}
        now = self.res.clock.now()
        async with self.res.db.read() as conn:
            limits = await load_limits(conn, env_id, now)
            workers = await worker_store.online_workers(
                conn, env_id, now - self.res.settings.heartbeat_timeout
            )
        return {r.id: self._reason(r, limits, workers, now) for r in waiting}

    def _reason(
        self, run: RunRecord, limits: Limits, workers: list[WorkerRecord], now: float
    ) -> WaitReason:
        if run.status == RunStatus.DELAYED.value:
            if run.debounce_key:
                return WaitReason(
                    "DEBOUNCED",
                    f"debounced (key {run.debounce_key!r}): starts at {_when(run.available_at)} "
                    "unless another trigger with the key pushes it back",
                    run.available_at,
                )
            return WaitReason(
                "DELAYED", f"delayed until {_when(run.available_at)}", run.available_at
            )
        if run.available_at > now:
            return WaitReason(
                "RETRY_BACKOFF", f"retrying at {_when(run.available_at)}", run.available_at
            )
        blocked = limits.check(run.queue_name, run.concurrency_key)
        if blocked is not None:
            return self._limit_reason(blocked, run, limits)
        serving = [w for w in workers if run.task_identifier in (w.tasks or [])]
        if run.locked_version:
            if not any(w.version == run.locked_version for w in serving):
                return WaitReason(
                    "WAITING_FOR_VERSION",
                    f"waiting for a worker of version {run.locked_version} "
                    f"with task {run.task_identifier!r}",
                )
        elif not serving:
            return WaitReason(
                "WAITING_FOR_WORKER",
                f"no online worker has task {run.task_identifier!r}; start a worker "
                "(`triggerfish worker` or `triggerfish dev`)",
            )
        return WaitReason("WAITING_FOR_SLOT", "next in line: waiting for a free worker slot")

    def _limit_reason(self, blocked: Blocked, run: RunRecord, limits: Limits) -> WaitReason:
        queue = run.queue_name
        rules = limits.rules.get(queue)
        match blocked:
            case Blocked.QUEUE_PAUSED:
                return WaitReason(blocked, f"queue {queue!r} is paused")
            case Blocked.ENVIRONMENT_LIMIT:
                return WaitReason(
                    blocked,
                    f"environment at its concurrency limit "
                    f"({limits.env_active} of {limits.env_limit} running)",
                )
            case Blocked.QUEUE_LIMIT:
                return WaitReason(
                    blocked,
                    f"queue {queue!r} at its concurrency limit "
                    f"({limits.queue_active(queue)} of {rules.limit if rules else '?'} running)",
                )
            case Blocked.CONCURRENCY_KEY_LIMIT:
                cap = limits.key_limit(rules) if rules else None
                held = limits.active.get((queue, run.concurrency_key), 0)
                return WaitReason(
                    blocked,
                    f"concurrency key {run.concurrency_key!r} of queue {queue!r} at its limit "
                    f"({held} of {cap} running)",
                )
            case Blocked.RATE_LIMITED:
                until = limits.rate_free_at(queue)
                rate = f"{rules.rate_count} per {rules.rate_period:g}s" if rules else ""
                return WaitReason(
                    blocked,
                    f"queue {queue!r} rate limited ({rate}) until "
                    f"{_when(until) if until else 'the window moves on'}",
                    until,
                )

    # -- doctor ---------------------------------------------------------------------------

    async def doctor(self, env_id: str) -> dict[str, Any]:
        """A summary of what could hold runs back in an environment."""
        now = self.res.clock.now()
        async with self.res.db.read() as conn:
            env_limit = await queue_store.environment_limit(conn, env_id)
            running = await run_store.active_total(conn, env_id)
            found, _total = await queue_store.list_queues(conn, env_id, offset=0, limit=1000)
            counts = await queue_store.queue_counts(conn, env_id, [q.name for q in found])
            workers = await worker_store.online_workers(
                conn, env_id, now - self.res.settings.heartbeat_timeout
            )
            oldest = await run_store.oldest_waiting(conn, env_id)
            waiting = await run_store.status_counts(
                conn,
                env_id,
                [RunStatus.QUEUED.value, RunStatus.DELAYED.value, RunStatus.PENDING_VERSION.value],
            )
        reason = (await self.explain(env_id, [oldest])).get(oldest.id) if oldest else None
        return {
            "environment": {"concurrencyLimit": env_limit, "running": running},
            "waiting": waiting,
            "queues": [
                {
                    "name": q.name,
                    "paused": bool(q.paused),
                    "concurrencyLimit": QueueInfo(q, 0, 0).limit,
                    "concurrencyKeyLimit": q.concurrency_key_limit,
                    "rateLimit": _rate(q),
                    "running": counts.get(q.name, (0, 0))[0],
                    "queued": counts.get(q.name, (0, 0))[1],
                }
                for q in found
            ],
            "workers": [
                {
                    "id": w.id,
                    "name": w.name,
                    "version": w.version,
                    "concurrency": w.concurrency,
                    "tasks": sorted(w.tasks or []),
                    "lastSeenSecondsAgo": round(now - w.last_seen_at, 1),
                }
                for w in workers
            ],
            "oldestQueuedRun": (
                {
                    "id": oldest.id,
                    "taskIdentifier": oldest.task_identifier,
                    "queue": oldest.queue_name,
                    "createdAt": iso_millis(oldest.created_at),
                    "waitingSeconds": round(
                        (to_datetime(now) - oldest.created_at).total_seconds(), 1
                    ),
                    "reason": {"code": str(reason.code), "message": reason.message}
                    if reason
                    else None,
                }
                if oldest
                else None
            ),
        }


def _rate(queue: QueueRecord) -> dict[str, Any] | None:
    if not queue.rate_limit_count or not queue.rate_limit_period:
        return None
    return {"limit": queue.rate_limit_count, "period": queue.rate_limit_period}
