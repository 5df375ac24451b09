"""The change feed: every change a subscriber can see, in one ordered list.

Realtime routes (SSE, the shape protocol), the Python ``subscribe`` iterators
and the dashboard all read this feed. Each change is a row of the ``changes``
table, written in the same transaction as the change it describes (by the
database triggers of migration 0008, or by the store for stream chunks), so
the feed never shows a change that rolled back and never misses one that
committed. Kinds and their ``data`` are listed in ``store/changes.py``:
``created``, ``status``, ``metadata``, ``tags``, ``log``, ``waitpoint``,
``stream``.

API (``engine.changes`` is the :class:`ChangeFeed` of an :class:`Engine`)::

    after = await engine.changes.position()        # "from now on"
    batch, after = await engine.changes.read_page(env_id, after, run_id=run_id)
    for change in batch:        # or tags=[…] / batch_id=… / kinds=[…]; ChangeRecord: id,
        ...                     # environment_id, run_id, batch_id, kind, data, created_at
    woke = await engine.changes.wait(after, timeout=15.0)  # True: read again

    await engine.changes.read(env_id, after, run_id=run_id)  # the changes alone

    async for change in engine.changes.follow(env_id, after, tags=["user:1"]):
        ...                                         # forever; the caller breaks out

``id`` is the change's position: monotonic across every server, so it is what
a subscriber resumes from (``Last-Event-ID``, the shape protocol's offset).
:meth:`ChangeFeed.read` only hands out changes up to the feed's *horizon*: the
highest id below which no change can still appear (``store/horizon.py``). On
PostgreSQL ids are taken from a sequence when a change is written, so a
transaction may commit id 11 before another commits id 10; the horizon stops
below a missing id until it shows up or every transaction that was running
when it was first missed has ended (it rolled back).
So resuming "after 11" never skips a 10 that committed later: nothing is lost,
nothing repeated. SQLite has one writer at a time and no such gaps.

One read for every live subscriber: a server keeps the newest changes of every
environment in memory (:attr:`ChangeFeed.RECENT` of them at most, and at most
``changes_window_bytes`` of them, a stream's large chunks counting by their
size) and, when woken, reads
the new ones from the table once, for all its subscribers together (one shared
read in flight at a time, like the horizon's). A subscriber whose position is
inside that window is served from memory; one further behind (a resume from an
old ``Last-Event-ID``) or following tags (whose filter needs the run's tags)
reads the table itself. So a thousand subscribers to runs cost a thousand
filters in memory per wake-up, not a thousand queries.

A new subscriber's first state (the runs it follows as they are now, and the
feed's newest id then) is one statement, :meth:`ChangeFeed.snapshot`, read
through a gate of ``pool_size // 2`` at once: a thousand subscribers connecting
together wait their turn in line instead of taking every pooled connection
(the ones workers report and heartbeat on). One that waits longer than
``realtime_admission_timeout`` gets :class:`~triggerfish.errors.ServerBusy`
(``api/realtime.py`` answers a stream of only ``retry:``, ``api/shapes.py`` a
503 with ``Retry-After``) and reconnects later::

    first = await engine.changes.snapshot(env_id, run_ids=[run_id])
    first.runs, first.position        # RunRecords, newest first; the newest change id

Wake-ups: every write transaction's commit wakes this server's waiters
(``Database.on_commit``), and on PostgreSQL sends a ``NOTIFY`` (through the
server's :class:`~triggerfish.store.notify.Notifier`, key :data:`WAKE_KEY`)
when other servers listen, so a subscriber on server B sees a change made
through server A. A wake-up only says "look again"; :meth:`ChangeFeed.wait`
also looks again every ``recheck`` seconds in case one was lost.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.records import ChangeRecord, RunRecord
from triggerfish._domain.states import RunStatus, is_final
from triggerfish.engine.in_flight import InFlight
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import ServerBusy
from triggerfish.store import changes as store
from triggerfish.store import runs as run_store

#: the notifier key change wake-ups travel under (environment ids never take it)
WAKE_KEY = "changes"
#: bytes a change in memory counts for besides its data's JSON (its record, ids, kind)
CHANGE_OVERHEAD_BYTES = 400


@dataclass(frozen=True)
class Snapshot:
    """Runs as they were at one moment, and the feed's newest change id then."""

    #: newest first
    runs: list[RunRecord]
    #: every change the runs reflect has an id up to this one (0: no run matched)
    position: int


def change_size(change: ChangeRecord) -> int:
    """About how many bytes ``change`` holds in memory."""
    data = json.dumps(change.data, separators=(",", ":"), default=str)
    return len(data) + CHANGE_OVERHEAD_BYTES


class ChangeFeed:
    """Reads of the change feed, and waiting for new changes (see the module doc)."""

    #: the changes kept in memory for live subscribers (all environments)
    RECENT = 4096
    #: changes read per query by the shared reader
    RECENT_STEP = 1000

    def __init__(self, res: EngineResources, *, recheck: float = 1.0) -> None:
        self._res = res
        self._recheck = recheck
        self._horizon = store.horizon(res.db)
        # the shared reader: every change with _recent_from < id <= _recent_upto,
        # oldest first (ids in _recent_ids, for bisecting)
        self._recent: list[ChangeRecord] = []
        self._recent_ids: list[int] = []
        self._recent_sizes: list[int] = []
        self._recent_bytes = 0
        self._recent_from: int | None = None
        self._recent_upto = 0
        self._catching: asyncio.Future[None] | None = None
        # the gate of first states; reads of a final run shared while in flight
        self._admission = asyncio.Semaphore(max(1, res.settings.pool_size // 2))
        self._final_reads: InFlight[tuple[str, str], RunRecord | None] = InFlight()
        res.db.on_commit.append(self._committed)

    def _committed(self) -> None:
        self._res.notifier.notify_nowait(WAKE_KEY)

    async def position(self) -> int:
        """The id of the newest change a reader may see now: start here to see
        only what comes next."""
        return await self._current_horizon()

    async def newest_id(self) -> int:
        """The id of the newest change committed now, which may be past the
        horizon: a state read before this call is reflected by changes up to it."""
        async with self._res.db.read() as conn:
            return await store.max_id(conn)

    async def read(
        self,
        env_id: str,
        after: int,
        *,
        run_id: str | None = None,
        tags: Sequence[str] | None = None,
        batch_id: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 500,
    ) -> list[ChangeRecord]:
        """The changes of ``env_id`` after ``after``, oldest first, at most ``limit``.

        Filters combine: ``run_id`` (one run), ``tags`` (runs carrying any of
        them), ``batch_id`` (the runs of a batch), ``kinds``. Only changes up
        to the horizon; an empty list means "nothing yet, :meth:`wait`".
        """
        changes, _ = await self.read_page(
            env_id,
            after,
            run_id=run_id,
            tags=tags,
            batch_id=batch_id,
            kinds=kinds,
            limit=limit,
        )
        return changes

    async def read_page(
        self,
        env_id: str,
        after: int,
        *,
        run_id: str | None = None,
        tags: Sequence[str] | None = None,
        batch_id: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 500,
    ) -> tuple[list[ChangeRecord], int]:
        """:meth:`read`, and the position it read up to: read on from there (it
        is past the last change returned when nothing else matched up to the
        horizon, so a quiet subscriber does not scan the same ids again)."""
        if not tags:
            await self._catch_up()
            if self._recent_from is not None and after >= self._recent_from:
                return self._from_memory(env_id, after, run_id, batch_id, kinds, limit)
        upto = await self._current_horizon()
        if upto <= after:
            return [], after
        async with self._res.db.read() as conn:
            changes = await store.read(
                conn,
                env_id,
                after,
                upto,
                run_id=run_id,
                tags=tags,
                batch_id=batch_id,
                kinds=kinds,
                limit=limit,
            )
        return changes, changes[-1].id if len(changes) == limit else upto

    async def wait(self, after: int, timeout: float) -> bool:
        """Wait until the feed holds a change (of any environment) after ``after``,
        or ``timeout`` seconds; True if there may be one to read."""
        notifier = self._res.notifier
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            listener = notifier.listener(WAKE_KEY)  # before looking: no wake-up lost
            if await self._current_horizon() > after:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await notifier.wait(listener, min(left, self._recheck))

    async def follow(
        self,
        env_id: str,
        after: int,
        *,
        run_id: str | None = None,
        tags: Sequence[str] | None = None,
        batch_id: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> AsyncIterator[ChangeRecord]:
        """Every matching change after ``after``, as it comes; never ends by itself."""
        while True:
            batch, after = await self.read_page(
                env_id, after, run_id=run_id, tags=tags, batch_id=batch_id, kinds=kinds
            )
            for change in batch:
                yield change
            if not batch:
                await self.wait(after, timeout=self._recheck * 30)

    # --- first states, through the gate ---

    async def snapshot(
        self,
        env_id: str,
        *,
        run_ids: Sequence[str] | None = None,
        tags: Sequence[str] = (),
        batch_id: str | None = None,
        limit: int = 1000,
    ) -> Snapshot:
        """The runs among ``run_ids`` (or carrying any of ``tags``, or of
        ``batch_id``) as they are now, newest first, at most ``limit``: one
        statement, once admitted (:class:`~triggerfish.errors.ServerBusy` when
        not within ``realtime_admission_timeout`` seconds)."""
        flt = RunFilter(tags=tags, batch_id=batch_id)
        wait = self._res.settings.realtime_admission_timeout
        async with self._admitted(wait), self._res.db.read() as conn:
            rows, position = await run_store.with_feed_position(
                conn, env_id, run_ids=run_ids, flt=flt, limit=limit
            )
        return Snapshot(rows, position)

    async def final_run(self, env_id: str, run_id: str) -> RunRecord | None:
        """A run whose final status change a subscriber just read (for its output
        and error): one read shared by every subscriber asking meanwhile, waiting
        its turn at the gate however long it takes (the stream is already open)."""
        row = await self._final_reads.get((env_id, run_id), lambda: self._read_run(env_id, run_id))
        if row is not None and not is_final(RunStatus(row.status)):
            row = await self._read_run(env_id, run_id)  # that read began before the change
        return row

    async def _read_run(self, env_id: str, run_id: str) -> RunRecord | None:
        async with self._admitted(None), self._res.db.read() as conn:
            return await run_store.get(conn, env_id, run_id)

    @contextlib.asynccontextmanager
    async def _admitted(self, timeout: float | None) -> AsyncIterator[None]:
        """Hold a place at the gate; ``timeout``: seconds to wait for one (None: no limit)."""
        if timeout is None:
            await self._admission.acquire()
        else:
            try:
                await asyncio.wait_for(self._admission.acquire(), timeout)
            except TimeoutError:
                raise ServerBusy(
                    "too many realtime subscribers are connecting to this server at once: "
                    f"this one was not admitted within {timeout:g} s; retry later",
                    # spread over the wait: those turned away together come back apart
                    retry_after=random.randint(1, max(1, math.ceil(timeout))),
                ) from None
        try:
            yield
        finally:
            self._admission.release()

    # --- the shared reader ---

    def _from_memory(
        self,
        env_id: str,
        after: int,
        run_id: str | None,
        batch_id: str | None,
        kinds: Sequence[str] | None,
        limit: int,
    ) -> tuple[list[ChangeRecord], int]:
        out: list[ChangeRecord] = []
        start = bisect.bisect_right(self._recent_ids, after)
        for change in self._recent[start:]:
            if (
                change.environment_id == env_id
                and (run_id is None or change.run_id == run_id)
                and (batch_id is None or change.batch_id == batch_id)
                and (not kinds or change.kind in kinds)
            ):
                out.append(change)
                if len(out) == limit:
                    return out, change.id
        return out, max(after, self._recent_upto)

    async def _catch_up(self) -> None:
        """Bring the in-memory window up to the horizon: one read shared by every
        caller meanwhile."""
        running = self._catching
        if running is None or running.done():
            running = self._catching = asyncio.ensure_future(self._read_recent())
        await asyncio.shield(running)

    async def _read_recent(self) -> None:
        upto = await self._current_horizon()
        if self._recent_from is None or upto - self._recent_upto > self.RECENT:
            # first use, or too far behind to be worth reading: start afresh here
            self._recent, self._recent_ids, self._recent_sizes = [], [], []
            self._recent_bytes = 0
            self._recent_from = self._recent_upto = upto
            return
        after = self._recent_upto
        fresh: list[ChangeRecord] = []
        async with self._res.db.read() as conn:
            while after < upto:
                batch = await store.read_all(conn, after, upto, self.RECENT_STEP)
                fresh += batch
                if len(batch) < self.RECENT_STEP:
                    break
                after = batch[-1].id
        self._keep(fresh)
        self._recent_upto = upto

    def _keep(self, fresh: list[ChangeRecord]) -> None:
        """Add ``fresh`` to the window, then drop its oldest changes while it holds
        more than ``RECENT`` of them or ``changes_window_bytes`` of them."""
        recent = self._recent + fresh
        sizes = self._recent_sizes + [change_size(c) for c in fresh]
        total = self._recent_bytes + sum(sizes[len(self._recent_sizes) :])
        limit = self._res.settings.changes_window_bytes
        drop = max(0, len(recent) - self.RECENT)
        total -= sum(sizes[:drop])
        while drop < len(recent) and total > limit:
            total -= sizes[drop]
            drop += 1
        if drop:
            self._recent_from = recent[drop - 1].id  # older resumes read the table
            recent, sizes = recent[drop:], sizes[drop:]
        self._recent, self._recent_sizes, self._recent_bytes = recent, sizes, total
        self._recent_ids = [c.id for c in recent]

    @property
    def window(self) -> tuple[int, int]:
        """How many changes the in-memory window holds, and about how many bytes."""
        return len(self._recent), self._recent_bytes

    # --- the horizon ---

    async def _current_horizon(self) -> int:
        """One look at the table shared by every caller meanwhile."""
        return await self._horizon.current()
