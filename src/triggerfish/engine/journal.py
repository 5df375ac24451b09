"""A run's journal: what its durable calls returned, so a new attempt can replay them.

The task process writes one entry per durable call (``step.run`` and friends)
through the worker API, guarded on its attempt id: an attempt that was
reclaimed, canceled or suspended writes nothing. The journal goes out with
every claimed run, so replaying a long journal costs no round trips. Results
above ``journal_inline_bytes`` are stored out of line and fetched on replay
only when the code reaches them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import JournalRecord
from triggerfish._domain.states import JournalStatus
from triggerfish._domain.times import to_datetime
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import RunNotFound, StaleTransition
from triggerfish.store import journal as journal_store
from triggerfish.store import runs as run_store


@dataclass(frozen=True)
class JournalEntry:
    """One durable call's outcome, as a task process reports it."""

    seq: int
    kind: str
    name: str
    status: JournalStatus
    result: Any = None
    error: dict[str, Any] | None = None
    #: failed tries of a step so far
    failures: int = 0
    #: when the call began (epoch seconds, the task process's clock)
    started_at: float | None = None
    #: a step's display fields (``name``, ``icon``, ``properties``)
    display: dict[str, Any] | None = None
    #: a step's failed tries so far: ``{"number", "at", "error"}`` each
    tries: list[dict[str, Any]] | None = None


class Journal:
    def __init__(self, res: EngineResources) -> None:
        self.res = res

    async def record(
        self, run_id: str, attempt_id: str, entry: JournalEntry, env_id: str | None = None
    ) -> None:
        """Persist ``entry`` if ``attempt_id`` is still the run's executing attempt.

        Raises ``StaleTransition`` otherwise (the worker stops the attempt).
        """
        now = to_datetime(self.res.clock.now())
        row, blob = self._row(run_id, entry, now)
        if self.res.db.capabilities.one_statement_journal_write and blob is None:
            # every step comes through here: one guarded statement, its own transaction
            written = await journal_store.guarded_upsert_alone(
                self.res.db,
                row,
                attempt_id=attempt_id,
                env_id=env_id,
                now=now,
                lock_version=self.res.settings.lock_run_versions,
            )
        else:
            async with self.res.db.write() as conn:
                written = await self._guarded_write(conn, row, blob, attempt_id, env_id, now)
        if not written:
            raise StaleTransition(run_id, f"journal entry {entry.seq}", attempt_id)

    async def write_guarded_in(
        self,
        conn: AsyncConnection,
        run_id: str,
        attempt_id: str,
        entry: JournalEntry,
        env_id: str,
        now: datetime,
    ) -> bool:
        """Write ``entry`` inside the caller's transaction if ``attempt_id`` is the
        run's executing attempt in ``env_id``; ``False`` (nothing written) if not."""
        row, blob = self._row(run_id, entry, now)
        return await self._guarded_write(conn, row, blob, attempt_id, env_id, now)

    async def _guarded_write(
        self,
        conn: AsyncConnection,
        row: JournalRecord,
        blob: str | None,
        attempt_id: str,
        env_id: str | None,
        now: datetime,
    ) -> bool:
        lock_version = self.res.settings.lock_run_versions
        if self.res.db.capabilities.one_statement_journal_write:  # guard and entry at once
            written = await journal_store.guarded_upsert(
                conn,
                row,
                attempt_id=attempt_id,
                env_id=env_id,
                now=now,
                lock_version=lock_version,
            )
            if written and blob is not None:
                await journal_store.put_blob(conn, row.run_id, row.seq, blob)
            return written
        guarded = await journal_store.guard_executing(
            conn, row.run_id, attempt_id, now, lock_version=lock_version
        )
        if guarded is None or (env_id is not None and guarded.environment_id != env_id):
            return False
        await self._write(conn, row, blob)
        return True

    def _row(
        self, run_id: str, entry: JournalEntry, now: datetime
    ) -> tuple[JournalRecord, str | None]:
        """The journal row of ``entry``, and its result's JSON when that goes out of line."""
        result, blob = entry.result, None
        if entry.status == JournalStatus.OK and entry.result is not None:
            text = json.dumps(entry.result, separators=(",", ":"))
            if len(text) > self.res.settings.journal_inline_bytes:
                result, blob = None, text
        row = JournalRecord(
            run_id=run_id,
            seq=entry.seq,
            kind=entry.kind,
            name=entry.name[:256],
            status=entry.status,
            result=result,
            error=entry.error,
            result_blob=blob is not None,
            failures=entry.failures,
            started_at=to_datetime(entry.started_at) if entry.started_at else now,
            finished_at=None if entry.status == JournalStatus.PENDING else now,
            # only steps that have them carry these (the store leaves out None)
            display=entry.display or None,
            tries=entry.tries or None,
        )
        return row, blob

    @staticmethod
    async def _write(conn: AsyncConnection, row: JournalRecord, blob: str | None) -> None:
        if blob is not None:
            await journal_store.put_blob(conn, row.run_id, row.seq, blob)
        await journal_store.upsert(conn, row)

    async def for_runs(self, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The journals to ship with freshly claimed runs."""
        if self.res.db.capabilities.reads_without_transaction:  # one SELECT, no BEGIN/COMMIT
            async with journal_store.single_statement(self.res.db) as conn:
                return await journal_store.entries_of(conn, run_ids)
        async with self.res.db.read() as conn:
            return await journal_store.entries_of(conn, run_ids)

    async def blob(self, env_id: str, run_id: str, seq: int) -> Any:
        """A result stored out of line."""
        async with self.res.db.read() as conn:
            run = await run_store.get(conn, env_id, run_id)
            if run is None:
                raise RunNotFound(run_id)
            data = await journal_store.get_blob(conn, run_id, seq)
        if data is None:
            raise RunNotFound(f"{run_id} (journal entry {seq})")
        return json.loads(data)
