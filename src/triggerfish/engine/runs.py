"""Reading and managing runs from outside: retrieve, list, cancel, logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.records import (
    AttemptRecord,
    JournalRecord,
    LogRecord,
    NewLogLine,
    RunEventRecord,
    RunRecord,
)
from triggerfish._domain.states import CANCELABLE, AttemptStatus, RunStatus
from triggerfish._domain.times import to_datetime
from triggerfish._redact import redact
from triggerfish.engine.resources import EngineResources
from triggerfish.engine.waitpoints import Waitpoints
from triggerfish.errors import RunNotFound, RunNotReschedulable, StaleTransition, UserError
from triggerfish.store import journal as journal_store
from triggerfish.store import logs as log_store
from triggerfish.store import runs as run_store
from triggerfish.store import workers as worker_store

#: tags a run may carry
MAX_TAGS = 10


@dataclass
class RunDetail:
    run: RunRecord
    tags: list[str]
    attempts: list[AttemptRecord]
    #: the journal: its durable calls, in order (the run's spans)
    steps: list[JournalRecord]


class Runs:
    def __init__(self, res: EngineResources, waitpoints: Waitpoints) -> None:
        self.res = res
        self.waitpoints = waitpoints

    async def retrieve(self, env_id: str, run_id: str) -> RunDetail:
        async with self.res.db.read() as conn:
            row = await run_store.get(conn, env_id, run_id)
            if row is None:
                raise RunNotFound(run_id)
            tags = (await run_store.tags_of(conn, [run_id]))[run_id]
            attempts = await run_store.list_attempts(conn, run_id)
            steps = await journal_store.list_entries(conn, run_id)
        return RunDetail(row, tags, attempts, steps)

    async def page(
        self,
        env_id: str,
        flt: RunFilter,
        *,
        size: int,
        after: str | None,
        before: str | None,
    ) -> tuple[list[RunRecord], dict[str, list[str]], bool]:
        async with self.res.db.read() as conn:
            rows, more = await run_store.page(
                conn, env_id, flt, size=size, after=after, before=before
            )
            tags = await run_store.tags_of(conn, [r.id for r in rows])
        return rows, tags, more

    async def count(
        self, env_id: str, flt: RunFilter, *, cap: int, below: str | None = None
    ) -> int:
        """How many runs match ``flt`` (with ids before ``below``), up to ``cap + 1``."""
        async with self.res.db.read() as conn:
            return await run_store.count_matching(conn, env_id, flt, cap=cap, below=below)

    async def search(self, env_id: str, text: str) -> list[RunRecord]:
        """Runs whose id or idempotency key is ``text`` (an index probe each, no scan)."""
        text = text.strip()
        if not text:
            return []
        async with self.res.db.read() as conn:
            found = await run_store.get(conn, env_id, text)
            if found is not None:
                return [found]
            task_ids = await worker_store.known_task_ids(conn, env_id)
            return await run_store.find_by_idempotency_key(conn, env_id, task_ids, text)

    async def cancel(self, env_id: str, run_id: str) -> RunRecord:
        """Cancel a run that has not finished; a finished run is returned unchanged.

        A queued or delayed run will never start. An executing run's worker
        learns at its next heartbeat and stops the child process. A waiting run's
        children (from ``trigger_and_wait``) are canceled too, unless it asked
        to keep them.
        """
        woken: set[str] = set()
        async with self.res.db.write() as conn:
            row = await run_store.get(conn, env_id, run_id)
            if row is None:
                raise RunNotFound(run_id)
            moved = await self.cancel_in(conn, row, woken)
        await self.waitpoints.wake(woken)
        await self.res.slot_freed(env_id)  # if it held one
        return moved

    async def cancel_many(self, env_id: str, run_ids: list[str]) -> int:
        """Cancel a batch of runs of ``env_id`` in one transaction, like :meth:`cancel`
        each; returns how many were canceled (unknown or finished ones are skipped).
        Callers keep batches bounded (the dashboard's bulk cancel sends 100 at most)."""
        woken: set[str] = set()
        canceled = 0
        async with self.res.db.write() as conn:
            for run_id in run_ids:
                row = await run_store.get(conn, env_id, run_id)
                if row is None or RunStatus(row.status) not in CANCELABLE:
                    continue
                moved = await self.cancel_in(conn, row, woken)
                canceled += moved.status == RunStatus.CANCELED
        await self.waitpoints.wake(woken)
        if canceled:
            await self.res.slot_freed(env_id)
        return canceled

    async def cancel_in(self, conn: Any, row: RunRecord, woken: set[str]) -> RunRecord:
        now = to_datetime(self.res.clock.now())
        if RunStatus(row.status) not in CANCELABLE:
            return row
        moved = await run_store.transition(
            conn,
            row.id,
            to=RunStatus.CANCELED,
            now=now,
            reason="canceled by request",
            values={"finished_at": now, "lease_expires_at": None},
        )
        if moved is None:  # it finished in the meantime
            return await run_store.get(conn, row.environment_id, row.id) or row
        if row.current_attempt_id and row.status in (RunStatus.DEQUEUED, RunStatus.EXECUTING):
            await run_store.update_attempt(
                conn, row.current_attempt_id, status=AttemptStatus.CANCELED, finished_at=now
            )
        await self.waitpoints.on_run_finished(conn, moved, woken)
        for child_id in await self.waitpoints.children_to_cancel(conn, row.id):
            child = await run_store.get_by_id(conn, child_id)
            if child is not None:
                await self.cancel_in(conn, child, woken)
        return moved

    async def reschedule(self, env_id: str, run_id: str, until: float) -> RunRecord:
        """Move a DELAYED run's start to ``until`` (epoch s); its TTL moves with it.

        Raises ``RunNotReschedulable`` (422) for a run that is not DELAYED.
        """
        now = to_datetime(self.res.clock.now())
        async with self.res.db.write() as conn:
            row = await run_store.reschedule_delayed(
                conn, env_id, run_id, until, to_datetime(until), now
            )
            if row is None:
                current = await run_store.get(conn, env_id, run_id)
                if current is None:
                    raise RunNotFound(run_id)
                raise RunNotReschedulable(run_id, current.status)
        return row

    async def add_tags(self, env_id: str, run_id: str, tags: list[str]) -> list[str]:
        """Add tags to a run (at most ``MAX_TAGS`` in all); returns its tags."""
        async with self.res.db.write() as conn:
            row = await run_store.get_for_update(conn, run_id)
            if row is None or row.environment_id != env_id:
                raise RunNotFound(run_id)
            total = set(row.tags or []) | set(tags)
            if len(total) > MAX_TAGS:
                raise UserError(
                    f"tags: a run may have at most {MAX_TAGS} tags; it has "
                    f"{len(row.tags or [])} and this adds {len(total) - len(row.tags or [])}"
                )
            return await run_store.add_tags(conn, row, tags)

    async def events(self, env_id: str, run_id: str) -> list[RunEventRecord]:
        async with self.res.db.read() as conn:
            if await run_store.get(conn, env_id, run_id) is None:
                raise RunNotFound(run_id)
            return await run_store.list_events(conn, run_id)

    async def append_logs(self, env_id: str, attempt_id: str, lines: list[dict[str, Any]]) -> int:
        """Log lines of an attempt of environment ``env_id`` (409 for any other attempt)."""
        async with self.res.db.write() as conn:
            attempt = await run_store.attempt_in_environment(conn, env_id, attempt_id)
            if attempt is None:
                raise StaleTransition("?", "log", attempt_id)
            rows = [
                NewLogLine(
                    run_id=attempt.run_id,
                    attempt_number=attempt.number,
                    ts=float(line.get("ts") or self.res.clock.now()),
                    level=str(line.get("level", "INFO"))[:8],
                    stream=str(line.get("stream", "logger"))[:8],
                    message=redact(str(line.get("message", ""))),
                    fields=_redact_fields(line.get("fields") or {}),
                )
                for line in lines
            ]
            await log_store.append(conn, rows)
        return len(rows)

    async def logs(
        self, env_id: str, run_id: str, *, after_id: int = 0, limit: int = 1000
    ) -> list[LogRecord]:
        async with self.res.db.read() as conn:
            if await run_store.get(conn, env_id, run_id) is None:
                raise RunNotFound(run_id)
            return await log_store.read(conn, run_id, after_id=after_id, limit=limit)


def _redact_fields(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        out[key] = redact(value) if isinstance(value, str) else value
    return out
