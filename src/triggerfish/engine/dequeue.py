"""Claiming runs for a worker: batched, index-backed, within every limit.

One claim is one write transaction of a bounded number of statements whatever
the batch size:

1. the environment's limit, its constrained queues (limits, key limits, rate
   limits, paused), their active counts and rate windows;
2. candidates in fair order (``ix_runs_queued``), stepping over queues and
   keys that are blocked (``SKIP LOCKED`` on PostgreSQL);
3. on PostgreSQL, the constrained queues among the candidates (and the
   environment row, when it has a limit) are locked ``FOR UPDATE`` and their
   usage read again, so servers serialise per limited queue;
4. one batched update + attempt + history insert, and the rate-window records.

Fairness comes from the order key itself (see ``enqueue.py``): runs of a
backlogged queue or concurrency key are spread out in fair-tag order, so the
index walk meets every bucket's next run near the front.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish import _otel
from triggerfish._domain.records import ClaimCandidate, RunRecord
from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import to_datetime
from triggerfish._ids import new_id, new_ids
from triggerfish.engine.attempts import Attempts, Outcome, Report, Start
from triggerfish.engine.handoff import Handoffs
from triggerfish.engine.limits import Limits
from triggerfish.engine.resources import EngineResources
from triggerfish.store import queues as queue_store
from triggerfish.store import runs as run_store
from triggerfish.store.db import database_errors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerIdentity:
    id: str
    environment_id: str
    version: str
    task_ids: tuple[str, ...]


async def load_limits(
    conn: AsyncConnection,
    env_id: str,
    now: float,
    *,
    names: list[str] | None = None,
    lock: bool = False,
) -> Limits:
    """Rules and usage of the environment's constrained queues (or of ``names``).

    With ``lock`` the constrained queue rows, and the environment row when it
    has a limit, are locked until the transaction ends.
    """
    env_limit = await queue_store.environment_limit(conn, env_id)
    if env_limit is not None and lock:
        env_limit = await queue_store.environment_limit(conn, env_id, lock=True)
    rules = await queue_store.constraints(conn, env_id, names, lock=lock)
    counted = [n for n, r in rules.items() if r.limit is not None or r.key_limit is not None]
    active = await run_store.active_counts(conn, env_id, counted)
    env_active = await run_store.active_total(conn, env_id) if env_limit is not None else 0
    rated = {n: now - (r.rate_period or 0.0) for n, r in rules.items() if r.rate_limited}
    used = await queue_store.recent_claims(conn, env_id, list(rated), rated)
    return Limits(rules, active, env_limit=env_limit, env_active=env_active, rate_used=used)


class Dequeue:
    #: how many candidates to look at per wanted run: room to step over runs that
    #: a limit reached during this very claim blocks, without a second round trip
    SCAN_FACTOR = 4

    def __init__(self, res: EngineResources, attempts: Attempts, handoffs: Handoffs) -> None:
        self.res = res
        self.attempts = attempts
        self.handoffs = handoffs
        self._requeues: set[asyncio.Task[None]] = set()  # see _park

    async def claim(self, worker: WorkerIdentity, limit: int, start: int = 0) -> list[RunRecord]:
        """Claim up to ``limit`` runs; the first ``start`` of them are started at once
        (EXECUTING: the worker has a free slot for each and sends no start report)."""
        if limit <= 0 or not worker.task_ids:
            return []
        if not _otel.configured():
            return await self._claim(worker, limit, start)
        # the server's own work: an internal span, sampled (``_otel``)
        attrs = {"triggerfish.worker.id": worker.id, "triggerfish.dequeue.max": limit}
        with _otel.internal_span("triggerfish.dequeue", attrs) as span:
            rows = await self._claim(worker, limit, start)
            span.set_attribute("triggerfish.dequeue.claimed", len(rows))
            return rows

    async def _claim(self, worker: WorkerIdentity, limit: int, start: int) -> list[RunRecord]:
        if self._one_statement(worker):
            # its own transaction: no BEGIN, no COMMIT, a held connection
            fetch, now = self.res.db.fetch_alone, self.res.clock.now()
            rows = await self._claim_unconstrained(fetch, worker, limit, start, now)
            if rows is not None:
                return rows
        async with self.res.db.write() as conn:
            return await self.claim_in(conn, worker, limit, start)

    async def report_and_claim(
        self,
        starts: list[Start],
        reports: list[Report],
        worker: WorkerIdentity,
        limit: int,
        start: int = 0,
    ) -> tuple[list[bool], list[Outcome | None], list[RunRecord]]:
        """``Attempts.report_many`` for a worker, then ``claim`` its next runs in the
        same transaction: the slots the reports free are taken at once, and the
        exchange costs one commit instead of two. On PostgreSQL, when every item is
        a success and nothing constrains the environment, the exchange is one
        statement (``store.run_store.claim_unconstrained_after``)."""
        if not starts and self._one_statement(worker) and limit > 0 and worker.task_ids:
            fast = await self._successes_then_claim(reports, worker, limit, start)
            if fast is not None:
                return [], *fast

        async def then(conn: AsyncConnection) -> list[RunRecord]:
            if limit <= 0 or not worker.task_ids:
                return []
            return await self.claim_in(conn, worker, limit, start)

        started, outcomes, claimed = await self.attempts.report_many_then(
            starts, reports, worker.environment_id, then
        )
        return started, outcomes, claimed or []

    async def _successes_then_claim(
        self, reports: list[Report], worker: WorkerIdentity, limit: int, start: int
    ) -> tuple[list[Outcome | None], list[RunRecord]] | None:
        """Record successes and claim in one statement; None to take the general path
        (a failure among the reports, or a run reported twice)."""
        runs = [r.run_id for r in reports]
        if not reports or any(r.failure is not None for r in reports) or len(set(runs)) < len(runs):
            return None
        now = self.res.clock.now()
        successes = run_store.Successes(
            run_ids=runs,
            attempt_ids=[r.attempt_id for r in reports],
            outputs=[r.output for r in reports],
        )
        try:
            done, rows = await run_store.claim_unconstrained_after(
                self.res.db, self._simple_claim(worker, limit, start, now), successes
            )
        except database_errors() as exc:  # one statement: it changed nothing, or all of it
            # every item is guarded, so the general path may record them again
            log.warning("a one-statement report failed (%s); taking the general path", exc)
            return None
        outcomes: list[Outcome | None] = [
            Outcome(RunStatus.COMPLETED) if r.run_id in done else None for r in reports
        ]
        rest = [i for i, r in enumerate(reports) if r.run_id not in done]
        if rest:
            # stale, or a parent waits on the run: the general path decides, and resolves
            # the parent's wait in the transaction that completes the run
            left = [reports[i] for i in rest]
            _, decided = await self.attempts.report_many([], left, worker.environment_id)
            for i, outcome in zip(rest, decided, strict=True):
                outcomes[i] = outcome
        if rows is None:  # something constrains the environment after all
            self.res.constrained.add(worker.environment_id)
            if done:
                await self.res.slot_freed(worker.environment_id)
            rows = await self.claim(worker, limit, start)
        return outcomes, rows

    async def claim_in(
        self, conn: AsyncConnection, worker: WorkerIdentity, limit: int, start: int
    ) -> list[RunRecord]:
        """``claim`` inside the caller's write transaction."""
        now = self.res.clock.now()
        env_id = worker.environment_id
        if self._one_statement(worker):
            fetch = run_store.in_transaction(conn)
            rows = await self._claim_unconstrained(fetch, worker, limit, start, now)
            if rows is not None:
                return rows
        limits = await load_limits(conn, env_id, now)
        if limits.env_limit is not None or limits.rules:
            self.res.constrained.add(env_id)
        else:
            self.res.constrained.discard(env_id)
        if limits.env_full():
            return []
        scan = max(limit * self.SCAN_FACTOR, 16)
        if self.res.db.capabilities.row_locks:
            limits, candidates = await self._pg_candidates(conn, worker, limits, now, scan)
        else:
            candidates = await self._candidates(conn, worker, limits, now, scan, False)
        chosen = _admit(candidates, limits, limit)
        if not chosen:
            return []
        lease = now + self.res.settings.heartbeat_timeout
        claims = [
            run_store.Claim(
                run_id=cand.id,
                attempt_id=new_id("attempt", now),
                worker_id=worker.id,
                version=worker.version,
                lease_expires_at=lease,
                now=to_datetime(now),
                start=i < start,
            )
            for i, cand in enumerate(chosen)
        ]
        rows = await run_store.mark_dequeued(conn, claims)
        await queue_store.record_claims(
            conn,
            env_id,
            [
                c.queue_name
                for c in chosen
                if c.queue_name in limits.rules and limits.rules[c.queue_name].rate_limited
            ],
            now,
        )
        return rows

    def _one_statement(self, worker: WorkerIdentity) -> bool:
        """Whether to try the one-statement claim (``store.runs.claim_unconstrained``) first."""
        one_statement = self.res.db.capabilities.one_statement_claim
        return one_statement and worker.environment_id not in self.res.constrained

    async def _claim_unconstrained(
        self, fetch: run_store.Fetch, worker: WorkerIdentity, limit: int, start: int, now: float
    ) -> list[RunRecord] | None:
        """The one-statement claim (``store.runs.claim_unconstrained``); None if
        something constrains the environment after all."""
        claim = self._simple_claim(worker, limit, start, now)
        rows = await run_store.claim_unconstrained(fetch, claim)
        if rows is None:
            self.res.constrained.add(worker.environment_id)
        return rows

    def _simple_claim(
        self, worker: WorkerIdentity, limit: int, start: int, now: float
    ) -> run_store.SimpleClaim:
        return run_store.SimpleClaim(
            env_id=worker.environment_id,
            task_ids=worker.task_ids,
            worker_id=worker.id,
            version=worker.version,
            now=now,
            now_at=to_datetime(now),
            lease_expires_at=now + self.res.settings.heartbeat_timeout,
            attempt_ids=new_ids("attempt", limit, now),
            start=start,
        )

    async def _candidates(
        self,
        conn: AsyncConnection,
        worker: WorkerIdentity,
        limits: Limits,
        now: float,
        scan: int,
        skip_locked: bool,
        only_queues: list[str] | None = None,
        exclude_queues: list[str] | None = None,
    ) -> list[ClaimCandidate]:
        return await run_store.queued_candidates(
            conn,
            env_id=worker.environment_id,
            task_ids=worker.task_ids,
            version=worker.version,
            now=now,
            limit=scan,
            skip_locked=skip_locked,
            exclude_queues=[*limits.blocked_queues(), *(exclude_queues or [])],
            exclude_keys=limits.blocked_keys(),
            only_queues=only_queues,
        )

    async def _pg_candidates(
        self, conn: AsyncConnection, worker: WorkerIdentity, limits: Limits, now: float, scan: int
    ) -> tuple[Limits, list[ClaimCandidate]]:
        """Candidates on PostgreSQL, fairly even with many claimers at once.

        Runs of unconstrained queues are taken with ``SKIP LOCKED``. Runs of
        constrained queues are read without row locks, but only after their
        queue rows are locked: claimers of a constrained queue take turns, so
        each sees the queue's true head (a claimer holding head rows while it
        waits for the queue lock would otherwise push others past them).
        With an environment limit every claim takes turns on the environment row.
        """
        env_id = worker.environment_id
        if limits.env_limit is not None:
            limits = await load_limits(conn, env_id, now, lock=True)
            if limits.env_full():
                return limits, []
            return limits, await self._candidates(conn, worker, limits, now, scan, False)
        constrained = sorted(limits.rules)
        free = await self._candidates(
            conn, worker, limits, now, scan, True, exclude_queues=constrained
        )
        open_queues = sorted(set(constrained) - set(limits.blocked_queues()))
        if not open_queues:
            return limits, free
        probe = await self._candidates(conn, worker, limits, now, scan, False, open_queues)
        touched = sorted({c.queue_name for c in probe})
        if not touched:
            return limits, free
        locked = await load_limits(conn, env_id, now, names=touched, lock=True)
        keep = set(limits.rules) - set(touched)
        limits = Limits(
            {**{n: limits.rules[n] for n in keep}, **locked.rules},
            {**{k: n for k, n in limits.active.items() if k[0] in keep}, **locked.active},
            env_limit=locked.env_limit,
            env_active=locked.env_active,
            rate_used={
                **{n: u for n, u in limits.rate_used.items() if n in keep},
                **locked.rate_used,
            },
        )
        held = await self._candidates(conn, worker, limits, now, scan, False, touched)
        return limits, sorted([*free, *held], key=lambda c: c.order_key)[:scan]

    async def claim_or_wait(
        self,
        worker: WorkerIdentity,
        limit: int,
        wait: float,
        gone: Callable[[], Awaitable[bool]] | None = None,
        start: int = 0,
    ) -> list[RunRecord]:
        """Claim now, or hold the call until work arrives or ``wait`` seconds pass.

        Woken by the notifier when a run is queued; also re-checks every
        ``maintenance_interval``. ``gone`` tells whether the caller hung up (a
        stopping worker): then nothing is claimed, and a claim that raced the
        hang-up is handed straight back.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        first = True
        while True:
            # (a caller that just called cannot have hung up yet: the first
            # round skips the check, which costs a receive on the connection)
            if not first and gone is not None and await gone():
                return []
            first = False
            event = self.res.notifier.listener(worker.environment_id)
            rows = await self.claim(worker, limit, start)
            if rows and gone is not None and await gone():
                await self._requeue(rows, "claimed for a worker that hung up")
                return []
            remaining = deadline - loop.time()
            if rows or remaining <= 0:
                return rows
            timeout = min(remaining, self.res.settings.maintenance_interval)
            if not self._one_statement(worker):
                await self.res.notifier.wait(event, timeout)
                continue
            rows = await self._park(worker, start, event, timeout)
            if rows and gone is not None and await gone():
                await self._requeue(rows, "handed to a worker that hung up")
                return []
            if rows:
                return rows

    async def _park(
        self, worker: WorkerIdentity, start: int, event: asyncio.Event, timeout: float
    ) -> list[Any]:
        """Wait for a wake-up, or for a trigger to hand over its run (``engine/handoff.py``);
        the runs handed over, if any."""

        async def orphaned(rows: Any) -> None:
            await self._requeue(rows, "handed to a claim that had stopped waiting")

        parked = self.handoffs.park(worker, start=start > 0, orphaned=orphaned)
        woken = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait(
                (woken, parked.delivered), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except BaseException:
            # cancelled (the caller went away) just after a hand-off: nobody will run
            # what it handed over. Requeue it now rather than when its lease runs out.
            if parked.delivered.done():
                handed = parked.delivered.result()
                task = asyncio.create_task(orphaned(handed))
                self._requeues.add(task)
                task.add_done_callback(self._requeues.discard)
            raise
        finally:
            woken.cancel()
            self.handoffs.leave(parked)
        return parked.delivered.result() if parked.delivered.done() else []

    async def _requeue(self, rows: Any, reason: str) -> None:
        await self.attempts.release([r.current_attempt_id for r in rows], reason)


def _admit(candidates: list[ClaimCandidate], limits: Limits, limit: int) -> list[ClaimCandidate]:
    """The first ``limit`` candidates the limits admit, each booking its slot."""
    chosen: list[ClaimCandidate] = []
    for cand in candidates:
        if len(chosen) == limit:
            break
        if limits.check(cand.queue_name, cand.concurrency_key) is None:
            limits.take(cand.queue_name, cand.concurrency_key)
            chosen.append(cand)
    return chosen
