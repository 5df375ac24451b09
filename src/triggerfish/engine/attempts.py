"""An attempt's life after the claim: start, heartbeat, finish, release.

Every report carries the attempt id handed out at claim time, and every state
change is guarded on it, so a reclaimed attempt's late report is refused with
``StaleTransition`` instead of overwriting its successor's work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import MovedRun, RunRecord
from triggerfish._domain.states import (
    AttemptStatus,
    FailureKind,
    RunStatus,
    attempt_status_for,
    final_status_for,
    is_retryable,
)
from triggerfish._domain.times import to_datetime
from triggerfish.engine.manifests import ManifestCache, retry_policy
from triggerfish.engine.resources import EngineResources
from triggerfish.engine.waitpoints import Waitpoints
from triggerfish.errors import StaleTransition
from triggerfish.store import runs as run_store
from triggerfish.store import workers as worker_store
from triggerfish.store.db import database_errors

log = logging.getLogger(__name__)

T = TypeVar("T")
#: more work for the transaction that records a batch of reports
Then = Callable[[AsyncConnection], Awaitable[T]]


@dataclass(frozen=True)
class Failure:
    """A failed attempt as the worker (or the reaper) reports it."""

    kind: FailureKind
    error: dict[str, Any]
    #: from a ``catch_error`` hook: {"action": "retry"|"fail", "delay": seconds|None}
    decision: dict[str, Any] | None = None


@dataclass(frozen=True)
class Start:
    """A claimed attempt the worker has begun to run."""

    run_id: str
    attempt_id: str


@dataclass(frozen=True)
class Report:
    """A finished attempt as the worker reports it: ``failure`` None means success."""

    run_id: str
    attempt_id: str
    output: Any = None
    failure: Failure | None = None


@dataclass(frozen=True)
class Outcome:
    status: RunStatus
    retry_at: float | None = None


class Attempts:
    def __init__(
        self, res: EngineResources, manifests: ManifestCache, waitpoints: Waitpoints
    ) -> None:
        self.res = res
        self.manifests = manifests
        self.waitpoints = waitpoints

    async def start(self, run_id: str, attempt_id: str, env_id: str | None = None) -> RunRecord:
        async with self.res.db.write() as conn:
            return await self.start_in(conn, run_id, attempt_id, env_id)

    async def start_in(
        self, conn: AsyncConnection, run_id: str, attempt_id: str, env_id: str | None
    ) -> RunRecord:
        """Mark a claimed attempt started inside the caller's transaction."""
        now = to_datetime(self.res.clock.now())
        row = await run_store.transition(
            conn,
            run_id,
            to=RunStatus.EXECUTING,
            now=now,
            attempt_id=attempt_id,
            env_id=env_id,
            values={"started_at": now},
            reason="attempt started",
        )
        if row is None:
            raise StaleTransition(run_id, RunStatus.EXECUTING, attempt_id)
        await run_store.update_attempt(
            conn, attempt_id, status=AttemptStatus.EXECUTING, started_at=now
        )
        return row

    async def succeed(
        self, run_id: str, attempt_id: str, output: Any, env_id: str | None = None
    ) -> Outcome:
        woken: set[str] = set()
        async with self.res.db.write() as conn:
            outcome = await self.succeed_in(conn, run_id, attempt_id, output, env_id, woken)
        await self.waitpoints.wake(woken)
        await self._slot_freed(run_id, env_id)
        return outcome

    async def succeed_in(
        self,
        conn: AsyncConnection,
        run_id: str,
        attempt_id: str,
        output: Any,
        env_id: str | None,
        woken: set[str],
    ) -> Outcome:
        """Record a successful attempt inside the caller's transaction."""
        now = to_datetime(self.res.clock.now())
        row = await run_store.transition(
            conn,
            run_id,
            to=RunStatus.COMPLETED,
            now=now,
            attempt_id=attempt_id,
            env_id=env_id,
            values={"output": output, "finished_at": now, "lease_expires_at": None},
            reason="attempt succeeded",
        )
        if row is None:
            raise StaleTransition(run_id, RunStatus.COMPLETED, attempt_id)
        await run_store.update_attempt(
            conn, attempt_id, status=AttemptStatus.COMPLETED, finished_at=now
        )
        # a parent waiting on this run resumes in the same transaction
        await self.waitpoints.on_run_finished(conn, row, woken)
        return Outcome(RunStatus.COMPLETED)

    async def report_many(
        self, starts: list[Start], reports: list[Report], env_id: str
    ) -> tuple[list[bool], list[Outcome | None]]:
        """Record many started and finished attempts in one transaction (a group commit).

        Answers, in order: for each start whether it was accepted, for each
        report the run's outcome; a start or report that is no longer current
        is answered False / None and wrote nothing. Should the shared
        transaction fail (say, two batches deadlock on a common parent), each
        item is recorded on its own instead.
        """
        started, outcomes, _ = await self.report_many_then(starts, reports, env_id, None)
        return started, outcomes

    async def report_many_then(
        self, starts: list[Start], reports: list[Report], env_id: str, then: Then[T] | None
    ) -> tuple[list[bool], list[Outcome | None], T | None]:
        """``report_many``, then ``then`` in the same transaction (a claim of the
        worker's next runs, say); if the shared transaction fails, ``then`` gets
        a transaction of its own after the items are recorded one by one."""
        woken: set[str] = set()
        try:
            async with self.res.db.write() as conn:
                started = await self._start_many(conn, starts, env_id)
                outcomes = await self._record_many(conn, reports, env_id, woken)
                after = await then(conn) if then is not None else None
        except database_errors() as exc:  # a programming error is not retried: it fails
            log.warning(
                "a batch of %d report(s) failed (%s); recording each alone",
                len(starts) + len(reports),
                exc,
            )
            started = [await self._start_alone(s, env_id) for s in starts]
            outcomes = [await self._record_alone(r, env_id) for r in reports]
            if then is None:
                return started, outcomes, None
            async with self.res.db.write() as conn:
                return started, outcomes, await then(conn)
        await self.waitpoints.wake(woken)
        await self._notify_retries([o for o in outcomes if o is not None], env_id)
        if any(o is not None for o in outcomes):
            await self.res.slot_freed(env_id)
        return started, outcomes, after

    async def _start_many(
        self, conn: AsyncConnection, starts: list[Start], env_id: str
    ) -> list[bool]:
        """``start_in`` for many attempts with a fixed number of statements."""
        now = to_datetime(self.res.clock.now())
        moved = await run_store.transition_many(
            conn,
            list(dict.fromkeys((s.run_id, s.attempt_id) for s in starts)),
            to=RunStatus.EXECUTING,
            now=now,
            env_id=env_id,
            values={"started_at": now},
            reason="attempt started",
        )
        ids = sorted(row.current_attempt_id for row in moved)
        await run_store.update_attempts(conn, ids, status=AttemptStatus.EXECUTING, started_at=now)
        return _first_of_each([(s.run_id, s.attempt_id) for s in starts], moved)

    async def _record_many(
        self, conn: AsyncConnection, reports: list[Report], env_id: str, woken: set[str]
    ) -> list[Outcome | None]:
        """Record reports in their order: each run of consecutive successes as one
        set-based step, each failure (retry decisions read the run) on its own."""
        outcomes: list[Outcome | None] = []
        successes: list[Report] = []
        for report in reports:
            if report.failure is None:
                successes.append(report)
                continue
            outcomes += await self._succeed_many(conn, successes, env_id, woken)
            successes = []
            outcomes.append(await self._record_in(conn, report, env_id, woken))
        outcomes += await self._succeed_many(conn, successes, env_id, woken)
        return outcomes

    async def _succeed_many(
        self, conn: AsyncConnection, reports: list[Report], env_id: str, woken: set[str]
    ) -> list[Outcome | None]:
        """``succeed_in`` for many attempts: one guarded update (outputs included),
        one history insert and one attempt update, whatever their number."""
        if not reports:
            return []
        now = to_datetime(self.res.clock.now())
        pairs = [(r.run_id, r.attempt_id) for r in reports]
        # a repeated report cannot count twice: only its first copy goes to the store
        first: dict[tuple[str, str], Any] = {}
        for pair, report in zip(pairs, reports, strict=True):
            first.setdefault(pair, report.output)
        moved = await run_store.transition_many(
            conn,
            list(first),
            to=RunStatus.COMPLETED,
            now=now,
            env_id=env_id,
            values={"finished_at": now, "lease_expires_at": None},
            reason="attempt succeeded",
            outputs=list(first.values()),
        )
        accepted = _first_of_each(pairs, moved)
        ids = sorted(row.current_attempt_id for row in moved)
        await run_store.update_attempts(conn, ids, status=AttemptStatus.COMPLETED, finished_at=now)
        for row in moved:
            if row.parent_run_id is not None:
                # a parent waiting on this run resumes in the same transaction;
                # its wait's result is the run's output, so read the whole row
                finished = await run_store.get_by_id(conn, row.id)
                assert finished is not None
                await self.waitpoints.on_run_finished(conn, finished, woken)
        return [Outcome(RunStatus.COMPLETED) if ok else None for ok in accepted]

    async def _start_alone(self, start: Start, env_id: str) -> bool:
        try:
            await self.start(start.run_id, start.attempt_id, env_id)
        except StaleTransition:
            return False
        return True

    async def _record_in(
        self, conn: AsyncConnection, report: Report, env_id: str, woken: set[str]
    ) -> Outcome | None:
        try:
            if report.failure is None:
                return await self.succeed_in(
                    conn, report.run_id, report.attempt_id, report.output, env_id, woken
                )
            return await self.fail_in(
                conn, report.run_id, report.attempt_id, report.failure, env_id, woken
            )
        except StaleTransition:
            return None  # the guarded statements matched nothing: no write to undo

    async def _record_alone(self, report: Report, env_id: str) -> Outcome | None:
        try:
            if report.failure is None:
                return await self.succeed(report.run_id, report.attempt_id, report.output, env_id)
            return await self.fail(report.run_id, report.attempt_id, report.failure, env_id)
        except StaleTransition:
            return None

    async def _notify_retries(self, outcomes: list[Outcome], env_id: str) -> None:
        """Wake pollers for runs a failure put back in the queue (now or after backoff)."""
        for outcome in outcomes:
            if outcome.status is not RunStatus.QUEUED:
                continue
            delay = (outcome.retry_at or 0) - self.res.clock.now()
            if delay > 0:
                self.res.notifier.notify_later(env_id, delay)
            else:
                await self.res.notifier.notify(env_id)

    async def fail(
        self,
        run_id: str,
        attempt_id: str,
        failure: Failure,
        env_id: str | None = None,
        *,
        lease_before: float | None = None,
    ) -> Outcome:
        """Record a failed attempt: retry or finish. ``lease_before``: a reclaim,
        refused unless the lease ran out before that time."""
        woken: set[str] = set()
        async with self.res.db.write() as conn:
            outcome = await self.fail_in(
                conn, run_id, attempt_id, failure, env_id, woken, lease_before=lease_before
            )
        await self.waitpoints.wake(woken)
        if outcome.status is RunStatus.QUEUED:
            env_id = await self._env_of(run_id)
            delay = (outcome.retry_at or 0) - self.res.clock.now()
            if delay > 0:
                self.res.notifier.notify_later(env_id, delay)
            else:
                await self.res.notifier.notify(env_id)
        else:
            await self._slot_freed(run_id, env_id)
        return outcome

    async def fail_in(
        self,
        conn: AsyncConnection,
        run_id: str,
        attempt_id: str,
        failure: Failure,
        env_id: str | None = None,
        woken: set[str] | None = None,
        *,
        lease_before: float | None = None,
    ) -> Outcome:
        """Record a failed attempt inside the caller's transaction: retry or finish.

        Runs that wait on this one and resume because it finished are added to
        ``woken`` (their environments need a wake-up after commit).
        """
        run = await run_store.get_by_id(conn, run_id)
        if (
            run is None
            or run.current_attempt_id != attempt_id
            or (env_id is not None and run.environment_id != env_id)
        ):
            raise StaleTransition(run_id, "a failure", attempt_id)
        now_epoch = self.res.clock.now()
        now = to_datetime(now_epoch)
        retry_at = await self._retry_at(conn, run, failure, now_epoch)
        failures = run.failure_count + (0 if failure.kind == "CANCELED" else 1)
        if retry_at is not None:
            to = RunStatus.QUEUED
            values: dict[str, Any] = {
                "failure_count": failures,
                "available_at": retry_at,
                "worker_id": None,
                "lease_expires_at": None,
            }
            reason = f"attempt {run.attempt_count} failed ({failure.kind}); retrying"
        else:
            to = final_status_for(failure.kind)
            values = {
                "failure_count": failures,
                "error": failure.error,
                "finished_at": now,
                "lease_expires_at": None,
            }
            reason = f"attempt {run.attempt_count} failed ({failure.kind}); no retry"
        row = await run_store.transition(
            conn,
            run_id,
            to=to,
            now=now,
            attempt_id=attempt_id,
            values=values,
            reason=reason,
            lease_before=lease_before,
        )
        if row is None:
            raise StaleTransition(run_id, to, attempt_id)
        await run_store.update_attempt(
            conn,
            attempt_id,
            status=attempt_status_for(failure.kind),
            finished_at=now,
            error=failure.error,
        )
        if to is not RunStatus.QUEUED:
            await self.waitpoints.on_run_finished(conn, row, woken if woken is not None else set())
        return Outcome(to, retry_at)

    async def _retry_at(
        self, conn: AsyncConnection, run: RunRecord, failure: Failure, now: float
    ) -> float | None:
        decision = (failure.decision or {}).get("action")
        if decision == "fail" or not is_retryable(failure.kind):
            return None
        version = await run_store.attempt_version(conn, run.current_attempt_id)
        manifest = await self.manifests.for_version(
            conn, run.environment_id, run.task_identifier, version
        )
        policy = retry_policy(manifest)
        max_attempts = run.max_attempts or policy.max_attempts
        if run.failure_count + 1 >= max_attempts:
            return None
        delay = (failure.decision or {}).get("delay")
        if delay is None:
            delay = policy.delay_after(run.failure_count + 1)
        return now + max(0.0, float(delay))

    async def release(
        self,
        attempt_ids: list[str],
        reason: str,
        env_id: str | None = None,
        *,
        lease_before: float | None = None,
    ) -> list[str]:
        """Put runs back in the queue without using up retries (graceful shutdown).

        ``lease_before``: a reclaim, which leaves a run whose lease has not run
        out before that time."""
        released: list[str] = []
        now = to_datetime(self.res.clock.now())
        envs: set[str] = set()
        async with self.res.db.write() as conn:
            for attempt_id in attempt_ids:
                run_id = await run_store.run_of_attempt(conn, attempt_id)
                if run_id is None:
                    continue
                row = await run_store.transition(
                    conn,
                    run_id,
                    to=RunStatus.QUEUED,
                    now=now,
                    attempt_id=attempt_id,
                    env_id=env_id,
                    values={
                        "worker_id": None,
                        "lease_expires_at": None,
                        "available_at": self.res.clock.now(),
                    },
                    reason=reason,
                    lease_before=lease_before,
                )
                if row is not None:
                    released.append(run_id)
                    envs.add(row.environment_id)
                    await run_store.update_attempt(
                        conn, attempt_id, status=AttemptStatus.RELEASED, finished_at=now
                    )
        for env_id in envs:
            await self.res.notifier.notify(env_id)
        return released

    async def heartbeat(self, worker_id: str, attempt_ids: list[str]) -> list[str]:
        """Renew leases; returns the attempts the worker must stop (canceled or reclaimed)."""
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            alive = await run_store.extend_leases(
                conn, worker_id, attempt_ids, now + self.res.settings.heartbeat_timeout
            )
            await worker_store.touch_worker(conn, worker_id, now)
        return [a for a in attempt_ids if a not in alive]

    async def require_owner(self, env_id: str, run_id: str, attempt_id: str) -> None:
        """Refuse (409) a call for an attempt that is not ``run_id``'s in ``env_id``."""
        async with self.res.db.read() as conn:
            attempt = await run_store.attempt_in_environment(conn, env_id, attempt_id)
        if attempt is None or attempt.run_id != run_id:
            raise StaleTransition(run_id, "act", attempt_id)

    async def _slot_freed(self, run_id: str, env_id: str | None) -> None:
        """``EngineResources.slot_freed`` for ``run_id``'s environment (looked up only
        where some environment has limits)."""
        if self.res.constrained:
            await self.res.slot_freed(env_id or await self._env_of(run_id))

    async def _env_of(self, run_id: str) -> str:
        async with self.res.db.read() as conn:
            row = await run_store.get_by_id(conn, run_id)
        return str(row.environment_id) if row else ""


def _first_of_each(pairs: list[tuple[str, str]], moved: list[MovedRun]) -> list[bool]:
    """Which (run, attempt) items a set-based transition accepted: the first one
    naming each moved run's attempt (a repeat is stale, as it would be after the
    first)."""
    left = {(row.id, row.current_attempt_id) for row in moved}
    accepted: list[bool] = []
    for pair in pairs:
        accepted.append(pair in left)
        left.discard(pair)
    return accepted
