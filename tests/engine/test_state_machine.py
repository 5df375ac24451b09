"""Random interleavings of claims, starts, reports, heartbeats, reclaims and cancels
against the real store. Whatever the order, no run moves backwards, none
completes twice, a stale report changes nothing, and every run can be driven to
a final status (none is lost or stuck)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from tests.support.machines import StoreMachine, run_machine_on
from triggerfish._domain.states import ACTIVE, ATTEMPT_FOR, FINAL, RunStatus, can_move
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Failure, Report, Start
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import StaleTransition
from triggerfish.store import runs as run_store

POLICY = {"max_attempts": 3, "factor": 1, "min_delay": 0, "max_delay": 0, "jitter": 0}
HEARTBEAT = 30.0


class RunLifecycle(StoreMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_000_000.0)
        url = self.db_url
        self.engine = Engine.create(
            ServerSettings(database_url=url, heartbeat_timeout=HEARTBEAT), clock=self.clock
        )
        self.run(self.engine.start(background=False))
        self.run(self.engine.environments.bootstrap())
        self.env_id = self.run(self.engine.environments.by_slug("dev")).id
        manifest = {
            "id": "t",
            "retry": POLICY,
            "machine": "micro",
            "queue": {"name": "task/t", "concurrency_limit": None},
        }
        self.workers = [
            self.run(
                self.engine.workers.register(
                    self.env_id, version="v1", name=f"w{i}", concurrency=4, tasks=[manifest]
                )
            )
            for i in range(2)
        ]
        self.run_ids: list[str] = []
        self.issued: dict[str, str] = {}  # attempt id -> run id, every attempt ever handed out
        self.completions: dict[str, int] = {}

    def teardown(self) -> None:
        try:
            self._drain()
        finally:
            self.run(self.engine.close())
            self.release_store()

    # -- helpers -------------------------------------------------------------------

    def _row(self, run_id: str) -> Any:
        async def get() -> Any:
            async with self.engine.res.db.read() as conn:
                return await run_store.get_by_id(conn, run_id)

        return self.run(get())

    def _current(self, statuses: set[RunStatus]) -> list[tuple[str, str]]:
        out = []
        for run_id in self.run_ids:
            row = self._row(run_id)
            if RunStatus(row.status) in statuses and row.current_attempt_id:
                out.append((run_id, row.current_attempt_id))
        return out

    def _report(self, coro: Any, run_id: str, attempt_id: str, expect_ok: bool) -> None:
        try:
            self.run(coro)
            ok = True
        except StaleTransition:
            ok = False
        if expect_ok:
            assert ok, f"a current report for {run_id}/{attempt_id} was refused"
        else:
            assert not ok, f"a stale report for {run_id}/{attempt_id} was accepted"

    # -- rules -----------------------------------------------------------------------

    @rule(n=st.integers(1, 3))
    def trigger(self, n: int) -> None:
        for _ in range(n):
            result = self.run(self.engine.enqueue.trigger(self.env_id, TriggerRequest("t")))
            self.run_ids.append(result.id)

    @rule(worker=st.integers(0, 1), limit=st.integers(1, 3), start=st.integers(0, 3))
    def claim(self, worker: int, limit: int, start: int) -> None:
        """A claim starts its first ``start`` runs itself (the worker's free slots)."""
        rows = self.run(self.engine.dequeue.claim(self.workers[worker], limit, start))
        self._claimed(rows, start)

    def _claimed(self, rows: list[Any], start: int) -> None:
        statuses = [RunStatus(row.status) for row in rows]
        started = min(start, len(rows))
        assert statuses == [RunStatus.EXECUTING] * started + [RunStatus.DEQUEUED] * (
            len(rows) - started
        )
        for row in rows:
            assert row.current_attempt_id not in self.issued, "an attempt was handed out twice"
            if row.attempt_count == 1:  # a run's start time is its first start
                assert (row.started_at is not None) == (row.status == RunStatus.EXECUTING.value)
            self.issued[row.current_attempt_id] = row.id

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        attempt_id = data.draw(st.sampled_from(sorted(self.issued)))
        run_id = self.issued[attempt_id]
        row = self._row(run_id)
        expect = row.current_attempt_id == attempt_id and row.status == RunStatus.DEQUEUED
        self._report(self.engine.attempts.start(run_id, attempt_id), run_id, attempt_id, expect)

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def succeed(self, data: st.DataObject) -> None:
        """Any attempt ever issued reports success: only the current executing one counts."""
        attempt_id = data.draw(st.sampled_from(sorted(self.issued)))
        run_id = self.issued[attempt_id]
        row = self._row(run_id)
        expect = row.current_attempt_id == attempt_id and row.status == RunStatus.EXECUTING
        self._report(
            self.engine.attempts.succeed(run_id, attempt_id, {"by": attempt_id}),
            run_id,
            attempt_id,
            expect,
        )
        if expect:
            self.completions[run_id] = self.completions.get(run_id, 0) + 1

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), kind=st.sampled_from(["USER", "CRASH", "ABORT", "TIMEOUT", "OOM"]))
    def fail(self, data: st.DataObject, kind: str) -> None:
        attempt_id = data.draw(st.sampled_from(sorted(self.issued)))
        run_id = self.issued[attempt_id]
        row = self._row(run_id)
        expect = row.current_attempt_id == attempt_id and RunStatus(row.status) in ACTIVE
        failure = Failure(kind, {"name": "E", "message": kind})  # type: ignore[arg-type]
        self._report(
            self.engine.attempts.fail(run_id, attempt_id, failure), run_id, attempt_id, expect
        )

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def report_batch(self, data: st.DataObject) -> None:
        """Starts and reports in one transaction: each counts only if current, as alone."""
        attempts = st.sampled_from(sorted(self.issued))
        start_picks = data.draw(st.lists(attempts, max_size=3))
        report_picks = data.draw(st.lists(st.tuples(attempts, st.booleans()), max_size=4))
        if not start_picks and not report_picks:
            return
        starts, started_ok, reports, expected = self._batch(start_picks, report_picks)
        started, outcomes = self.run(self.engine.attempts.report_many(starts, reports, self.env_id))
        self._check_batch(started, outcomes, started_ok, reports, expected)

    @precondition(lambda self: self.issued)
    @rule(
        data=st.data(),
        worker=st.integers(0, 1),
        limit=st.integers(0, 3),
        start=st.integers(0, 3),
        successes_only=st.booleans(),
    )
    def report_and_claim(
        self, data: st.DataObject, worker: int, limit: int, start: int, successes_only: bool
    ) -> None:
        """A worker's exchange: its reports, then a claim, in one go. Successes alone
        (no starts, no run twice) take the one-statement path on PostgreSQL."""
        attempts = st.sampled_from(sorted(self.issued))
        if successes_only:
            start_picks: list[str] = []
            picks = data.draw(st.lists(attempts, max_size=4, unique=True))
            report_picks = [(a, True) for a in picks]
        else:
            start_picks = data.draw(st.lists(attempts, max_size=2))
            report_picks = data.draw(st.lists(st.tuples(attempts, st.booleans()), max_size=3))
        starts, started_ok, reports, expected = self._batch(start_picks, report_picks)
        started, outcomes, rows = self.run(
            self.engine.dequeue.report_and_claim(
                starts, reports, self.workers[worker], limit, start
            )
        )
        self._check_batch(started, outcomes, started_ok, reports, expected)
        self._claimed(rows, start)

    @precondition(lambda self: self.backend == "postgresql" and self.run_ids)
    @rule(worker=st.integers(0, 1), start=st.integers(0, 1))
    def trigger_to_a_parked_claim(self, worker: int, start: int) -> None:
        """A claim waits for work; a trigger hands it its run when nothing older is
        queued (one statement), or queues it and wakes the claim."""
        self._claimed(self.run(self._parked_then_trigger(self.workers[worker], start)), start)

    async def _parked_then_trigger(self, worker: Any, start: int) -> list[Any]:
        handoffs = self.engine.handoffs
        before = handoffs.parked_count(self.env_id)
        claim = asyncio.create_task(self.engine.dequeue.claim_or_wait(worker, 4, 10, start=start))
        async with asyncio.timeout(5):  # parked, or answered at once from the queue
            while not claim.done() and handoffs.parked_count(self.env_id) == before:
                await asyncio.sleep(0.001)
        if not claim.done():
            result = await self.engine.enqueue.trigger(self.env_id, TriggerRequest("t"))
            self.run_ids.append(result.id)
        return await asyncio.wait_for(claim, 5)

    def _batch(
        self, start_picks: list[str], report_picks: list[tuple[str, bool]]
    ) -> tuple[list[Start], list[bool], list[Report], list[bool]]:
        """The starts and reports of these picks, and which of them should count."""
        status = {r: RunStatus(self._row(r).status) for r in set(self.issued.values())}
        current = {r: self._row(r).current_attempt_id for r in status}
        starts, started_ok = [], []
        for attempt_id in start_picks:  # starts go first, in order
            run_id = self.issued[attempt_id]
            ok = current[run_id] == attempt_id and status[run_id] == RunStatus.DEQUEUED
            started_ok.append(ok)
            if ok:
                status[run_id] = RunStatus.EXECUTING
            starts.append(Start(run_id, attempt_id))
        reports, expected, touched = [], [], set()
        for attempt_id, ok in report_picks:
            run_id = self.issued[attempt_id]
            live = {RunStatus.EXECUTING} if ok else ACTIVE
            counted = current[run_id] == attempt_id and status[run_id] in live
            expected.append(counted and run_id not in touched)
            if expected[-1]:
                touched.add(run_id)
            failure = None if ok else Failure("USER", {"name": "E", "message": "batch"})
            reports.append(Report(run_id, attempt_id, {"by": attempt_id}, failure))
        return starts, started_ok, reports, expected

    def _check_batch(
        self,
        started: list[bool],
        outcomes: list[Any],
        started_ok: list[bool],
        reports: list[Report],
        expected: list[bool],
    ) -> None:
        assert started == started_ok
        assert [o is not None for o in outcomes] == expected
        for report, counted in zip(reports, expected, strict=True):
            if counted and report.failure is None:
                self.completions[report.run_id] = self.completions.get(report.run_id, 0) + 1

    @rule(worker=st.integers(0, 1))
    def heartbeat(self, worker: int) -> None:
        mine = [a for a, r in self.issued.items()]
        self.run(self.engine.attempts.heartbeat(self.workers[worker].id, mine))

    @rule(seconds=st.sampled_from([1.0, HEARTBEAT + 1]))
    def time_passes_and_reaper_runs(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.run(self.engine.maintenance.sweep())

    @precondition(lambda self: self.run_ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        run_id = data.draw(st.sampled_from(self.run_ids))
        before = RunStatus(self._row(run_id).status)
        self.run(self.engine.runs.cancel(self.env_id, run_id))
        after = RunStatus(self._row(run_id).status)
        assert after == (before if before in FINAL else RunStatus.CANCELED)

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def histories_only_move_forward(self) -> None:
        for run_id in self.run_ids:
            events = self.run(self.engine.runs.events(self.env_id, run_id))
            previous: RunStatus | None = None
            for event in events:
                to = RunStatus(event.to_status)
                if previous is None:
                    assert event.from_status is None and to in (RunStatus.QUEUED, RunStatus.DELAYED)
                else:
                    assert event.from_status == previous.value
                    assert can_move(previous, to), f"{run_id}: {previous} -> {to}"
                    assert previous not in FINAL, f"{run_id} moved after finishing"
                previous = to
            assert previous is not None, f"{run_id} has no history (lost)"
            assert previous.value == self._row(run_id).status

    @invariant()
    def each_claimed_run_has_its_attempt_row(self) -> None:
        """Whichever path claimed it, a run's current attempt is stored with its number
        and the status its run's gives it."""
        for run_id in self.run_ids:
            row = self._row(run_id)
            if row.current_attempt_id is None:
                continue
            detail = self.run(self.engine.runs.retrieve(self.env_id, run_id))
            current = [a for a in detail.attempts if a.id == row.current_attempt_id]
            assert [a.number for a in current] == [row.attempt_count]
            status = RunStatus(row.status)
            if status in ATTEMPT_FOR:
                assert current[0].status == ATTEMPT_FOR[status].value, (run_id, status)

    @invariant()
    def nothing_completes_twice(self) -> None:
        assert all(n == 1 for n in self.completions.values())

    # -- liveness ----------------------------------------------------------------------

    def _drain(self) -> None:
        """Drive everything to a final status with well-behaved workers."""
        for _ in range(50):
            pending = [r for r in self.run_ids if RunStatus(self._row(r).status) not in FINAL]
            if not pending:
                return
            self.clock.advance(HEARTBEAT + 1)
            self.run(self.engine.maintenance.sweep())
            for row in self.run(self.engine.dequeue.claim(self.workers[0], 10)):
                self.run(self.engine.attempts.start(row.id, row.claimed_attempt_id))
                self.run(self.engine.attempts.succeed(row.id, row.claimed_attempt_id, "drained"))
        stuck = [r for r in self.run_ids if RunStatus(self._row(r).status) not in FINAL]
        raise AssertionError(f"runs stuck: {stuck}")


SETTINGS = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_run_lifecycle_sqlite() -> None:
    run_machine_on(RunLifecycle, "sqlite", SETTINGS)


def test_run_lifecycle_postgresql(pg_template: str) -> None:
    run_machine_on(RunLifecycle, "postgresql", SETTINGS, pg_template)
