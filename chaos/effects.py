"""The side-effect table: what the tasks did, written outside Triggerfish.

Every task of ``project/tasks`` writes one row per event with its own
connection to the throwaway instance's ``chaos`` database (not through
Triggerfish): ``start`` when an attempt enters the task body (each replay
too), ``step`` when a step's function runs (its result, the row's
``effect_id``, is what the step returns, so the run's journal holds it), and
``end`` just before the body returns. The checker reads this table against the
runs' journaled outputs. The INSERT lives in ``project/tasks/chaos_tasks.py``
(the task processes import nothing of this package); keep the columns in step.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg

DATABASE = "chaos"

DDL = """
CREATE TABLE IF NOT EXISTS effects (
    effect_id text PRIMARY KEY,
    key text NOT NULL,
    run_id text NOT NULL,
    attempt_id text NOT NULL,
    attempt integer NOT NULL,
    kind text NOT NULL CHECK (kind IN ('start', 'step', 'end')),
    step text NOT NULL DEFAULT '',
    pid integer NOT NULL,
    worker_pid integer NOT NULL,
    at double precision NOT NULL DEFAULT extract(epoch FROM clock_timestamp())
);
CREATE INDEX IF NOT EXISTS effects_at ON effects (at);
"""


@dataclass(frozen=True)
class Effect:
    """One row of the side-effect table."""

    effect_id: str
    key: str
    run_id: str
    attempt_id: str
    attempt: int
    kind: str
    step: str
    #: the task process
    pid: int
    #: its parent: the worker process
    worker_pid: int
    #: epoch seconds (PostgreSQL's clock, the same host as the suite's)
    at: float


class EffectsReader:
    """The suite's view of the table (reconnects after a PostgreSQL restart)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None
        #: one connection, one query at a time (the load and the faults share it)
        self._lock = asyncio.Lock()

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.url, timeout=5)
        return self._conn

    async def create(self) -> None:
        async with self._lock:
            conn = await self._connection()
            await conn.execute(DDL)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Rows of ``sql``, or [] while the database does not answer."""
        async with self._lock:
            try:
                conn = await self._connection()
                return list(await conn.fetch(sql, *args, timeout=10))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                await self._close()
                return []

    async def first_start_after(self, after: float, worker_pid: int | None = None) -> float | None:
        """When the first attempt entered a task body after ``after`` (on ``worker_pid``)."""
        if worker_pid is None:
            rows = await self.fetch(
                "SELECT min(at) AS at FROM effects WHERE kind = 'start' AND at > $1", after
            )
        else:
            rows = await self.fetch(
                "SELECT min(at) AS at FROM effects WHERE kind = 'start' AND at > $1 "
                "AND worker_pid = $2",
                after,
                worker_pid,
            )
        return float(rows[0]["at"]) if rows and rows[0]["at"] is not None else None

    async def first_start_of_run_after(self, run_id: str, after: float) -> float | None:
        """When run ``run_id`` next entered its body (a new attempt) after ``after``."""
        rows = await self.fetch(
            "SELECT min(at) AS at FROM effects WHERE kind = 'start' AND run_id = $1 AND at > $2",
            run_id,
            after,
        )
        return float(rows[0]["at"]) if rows and rows[0]["at"] is not None else None

    async def ended_keys(self, after: float) -> list[tuple[str, float]]:
        """Keys whose body finished after ``after`` (with when)."""
        rows = await self.fetch(
            "SELECT key, at FROM effects WHERE kind = 'end' AND at > $1 ORDER BY at", after
        )
        return [(r["key"], float(r["at"])) for r in rows]

    async def open_attempts(self, worker_pid: int, since: float) -> list[tuple[int, str]]:
        """(task pid, run id) of attempts on ``worker_pid`` that started after
        ``since`` and have written no ``end`` row: task processes busy now."""
        rows = await self.fetch(
            "SELECT s.pid, s.run_id FROM effects s WHERE s.kind = 'start' AND s.worker_pid = $1 "
            "AND s.at > $2 AND NOT EXISTS (SELECT 1 FROM effects e WHERE e.kind = 'end' "
            "AND e.attempt_id = s.attempt_id) ORDER BY s.at DESC",
            worker_pid,
            since,
        )
        return [(int(r["pid"]), r["run_id"]) for r in rows]

    async def all(self) -> list[Effect]:
        async with self._lock:
            conn = await self._connection()
            rows = await conn.fetch(
                "SELECT effect_id, key, run_id, attempt_id, attempt, kind, step, pid, "
                "worker_pid, at FROM effects ORDER BY at"
            )
        return [Effect(**dict(r)) for r in rows]

    async def close(self) -> None:
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close(timeout=2)
            except Exception:
                conn.terminate()
