"""The horizon of a table whose ids come from a sequence: the highest id below
which no row can still appear.

On PostgreSQL write transactions run side by side and take their ids when they
insert, so a transaction holding id 10 may commit after another committed 11.
A reader that walks the ids and moved past 11 would never see 10. Readers that
walk a table's primary key (the change feed, the shared walks of the run
history) read only up to its :class:`Horizon`, which stops below a missing id
until it shows up or every transaction that was running when it was first
missed has ended (it rolled back; after ``gap_limit`` seconds it counts as
rolled back whatever PostgreSQL says). SQLite has one writer at a time and no
such gaps: there the horizon is the newest id, and a look stays good while
this process commits nothing (every write of ours ends with
``Database.on_commit``), for at most :data:`QUIET_REUSE` seconds, after which
another process's writes to the file show too. A live subscriber's wake-up
then costs one read of the table, not three.

A missing id's transaction took its id before the ids above it were read, so
if it is still running it is among the transactions running just after that
read (``pg_stat_activity``): once none of those runs any more, an id still
missing is gone for good.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import Column, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store.db import Database

#: ids read per step
STEP = 5000
#: seconds after which a missing id counts as rolled back whatever PostgreSQL says
GAP_LIMIT = 60.0
#: SQLite: seconds a look at the table is reused while this process commits nothing
QUIET_REUSE = 0.25


@dataclass(frozen=True, slots=True)
class _Sighting:
    """Ids missing up to ``upto`` when the horizon looked at ``at``, with the
    transactions running then: one of them may still commit such an id."""

    upto: int
    at: float
    running: frozenset[str]


class Horizon:
    """The horizon of the ids in ``column`` (a table's integer primary key), kept
    by one server; see the module doc.

    :meth:`current` advances it with one look at the table shared by every caller
    meanwhile. A walk whose position the servers share passes that position as
    ``at_least``: a position a server moved to was below its horizon then, so
    every row up to it has committed or rolled back, and a horizon that starts
    there (rather than at the newest id) misses nothing above it.
    """

    def __init__(
        self,
        db: Database,
        column: Column[int],
        *,
        step: int = STEP,
        gap_limit: float = GAP_LIMIT,
        quiet_reuse: float = QUIET_REUSE,
    ) -> None:
        self._db = db
        self._quiet_reuse = quiet_reuse if not db.capabilities.concurrent_writers else 0.0
        self._column = column
        self._step = step
        self._gap_limit = gap_limit
        self._upto: int | None = None
        #: the highest shared position a walk reported (None: no walk reads this horizon)
        self._floor: int | None = None
        self._sightings: list[_Sighting] = []
        self._advancing: asyncio.Future[int] | None = None
        # SQLite: this process's commits so far; that count and the time when the
        # last look that reached the newest id began
        self._commits = 0
        self._last_look: tuple[int, float] | None = None
        self._saw_newest = False
        if self._quiet_reuse > 0:
            db.on_commit.append(self._committed)

    def _committed(self) -> None:
        self._commits += 1

    async def current(self, *, at_least: int | None = None) -> int:
        """The horizon now (at least ``at_least``, when given)."""
        if at_least is not None:
            self._floor = max(at_least, self._floor or 0)
        if self._upto is not None and self._unchanged_since_last_look():
            return max(self._upto, self._floor or 0)
        running = self._advancing
        if running is None or running.done():
            running = self._advancing = asyncio.ensure_future(self._look())
        return max(await asyncio.shield(running), self._floor or 0)

    def _unchanged_since_last_look(self) -> bool:
        """SQLite: no id can have appeared since the last look began (this process
        committed nothing since, and it is recent enough for other processes)."""
        if self._quiet_reuse <= 0 or self._last_look is None:
            return False  # PostgreSQL: every look reads
        commits, at = self._last_look
        return commits == self._commits and time.monotonic() - at < self._quiet_reuse

    async def _look(self) -> int:
        began = (self._commits, time.monotonic())
        self._saw_newest = False
        upto = await self._advance()
        self._last_look = began if self._saw_newest else None
        return upto

    async def _advance(self) -> int:
        async with self._db.read() as conn:
            if self._upto is None and self._floor is None:
                self._upto = await self._max_id(conn)
                self._saw_newest = True
                return self._upto
            horizon = max(self._upto or 0, self._floor or 0)
            ids = await self._ids_after(conn, horizon, self._step)
            if not ids or not self._db.capabilities.concurrent_writers:
                self._saw_newest = len(ids) < self._step
                return self._settle(ids[-1] if ids else horizon)
            if ids[-1] - horizon == len(ids):
                return self._settle(ids[-1])
            # A missing id: a transaction still running, or one that rolled back.
            # Look at which transactions run now, then at the ids again.
            running = await running_transactions(conn)
            seen_upto = ids[-1]
            ids = [i for i in await self._ids_after(conn, horizon, len(ids)) if i <= seen_upto]
        return self._settle(self._past_gaps(horizon, ids, seen_upto, running))

    def _past_gaps(
        self, horizon: int, ids: list[int], seen_upto: int, running: frozenset[str]
    ) -> int:
        """How far the horizon moves over ``ids`` (present, in order, above
        ``horizon``): up to the first missing id that may still commit."""
        now = time.monotonic()
        covered = self._sightings[-1].upto if self._sightings else horizon
        if seen_upto > covered:
            self._sightings.append(_Sighting(seen_upto, now, running))
        # ids missing up to `gone` are gone for good: a sighting from an earlier
        # look whose transactions all ended (or that is too old to wait for). Never
        # on the look that first missed them: an insert takes its id a moment
        # before its transaction gets the xid that pg_stat_activity shows.
        gone = max(
            (
                s.upto
                for s in self._sightings
                if s.at < now and (not (s.running & running) or now - s.at >= self._gap_limit)
            ),
            default=horizon,
        )
        for found in ids:
            if found - 1 > horizon and found - 1 > gone:
                return max(horizon, gone)  # ids horizon+1 … found-1 may still commit
            horizon = found
        return max(horizon, min(gone, seen_upto))

    def _settle(self, horizon: int) -> int:
        horizon = max(horizon, self._floor or 0)
        self._sightings = [s for s in self._sightings if s.upto > horizon]
        self._upto = horizon
        return horizon

    async def _max_id(self, conn: AsyncConnection) -> int:
        return int((await conn.execute(select(func.max(self._column)))).scalar() or 0)

    async def _ids_after(self, conn: AsyncConnection, after: int, limit: int) -> list[int]:
        col = self._column
        stmt = select(col).where(col > after).order_by(col).limit(limit)
        return [int(i) for i in (await conn.execute(stmt)).scalars()]


async def running_transactions(conn: AsyncConnection) -> frozenset[str]:
    """PostgreSQL: the ids of the transactions running in this database now (those
    of every role the server's role may see in ``pg_stat_activity``)."""
    query = text(
        "SELECT backend_xid::text FROM pg_stat_activity "
        "WHERE datname = current_database() AND backend_xid IS NOT NULL"
    )
    return frozenset((await conn.execute(query)).scalars())
