"""Random interleavings of claims, starts, reports, heartbeats, reclaims and cancels
against the real store. Whatever the order, no run moves backwards, none
completes twice, a stale report changes nothing, and every run can be driven to
a final status (none is lost or stuck)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from tests.support.machines import FastPaths, StoreMachine, run_machine_on
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
        return self._rows([run_id])[run_id]

    def _rows(self, run_ids: list[str] | None = None) -> dict[str, Any]:
        """The stored rows of ``run_ids`` (every run by default), in one read."""

        async def get() -> dict[str, Any]:
            async with self.engine.res.db.read() as conn:
                wanted = self.run_ids if run_ids is None else run_ids
                return {r: await run_store.get_by_id(conn, r) for r in wanted}

        return dict(self.run(get()))

    def _stored(self) -> list[tuple[Any, list[Any], list[Any]]]:
        """Each run with its history and attempts, in one read."""

        async def get() -> list[tuple[Any, list[Any], list[Any]]]:
            async with self.engine.res.db.read() as conn:
                return [
                    (
                        await run_store.get_by_id(conn, r),
                        await run_store.list_events(conn, r),
                        await run_store.list_attempts(conn, r),
                    )
                    for r in self.run_ids
                ]

        return list(self.run(get()))

    def _current(self, statuses: set[RunStatus]) -> list[tuple[str, str]]:
        return [
            (run_id, row.current_attempt_id)
            for run_id, row in self._rows().items()
            if RunStatus(row.status) in statuses and row.current_attempt_id
        ]

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

    @rule(
        data=st.data(), worker=st.integers(0, 1), limit=st.integers(1, 3), start=st.integers(0, 3)
    )
    def claim(self, data: st.DataObject, worker: int, limit: int, start: int) -> None:
        """A claim starts its first ``start`` runs itself (the worker's free slots). While
        runs execute, a worker sends the successes of some of them along with it (the
        one-statement exchange on PostgreSQL); an idle worker sends nothing."""
        executing = sorted(a for _, a in self._current({RunStatus.EXECUTING}))
        if executing:
            done = st.lists(st.sampled_from(executing), min_size=1, max_size=3, unique=True)
            successes = data.draw(done)
            self._exchange([], [(a, True) for a in successes], worker, limit, start)
            return
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
        data=st.data(), worker=st.integers(0, 1), limit=st.integers(0, 3), start=st.integers(0, 3)
    )
    def report_and_claim(self, data: st.DataObject, worker: int, limit: int, start: int) -> None:
        """A worker's exchange: its starts and reports, then a claim, in one go."""
        attempts = st.sampled_from(sorted(self.issued))
        start_picks = data.draw(st.lists(attempts, max_size=2))
        report_picks = data.draw(st.lists(st.tuples(attempts, st.booleans()), max_size=3))
        self._exchange(start_picks, report_picks, worker, limit, start)

    @precondition(lambda self: self.issued)
    @rule(
        data=st.data(), worker=st.integers(0, 1), limit=st.integers(1, 3), start=st.integers(0, 3)
    )
    def report_successes_and_claim(
        self, data: st.DataObject, worker: int, limit: int, start: int
    ) -> None:
        """A busy worker's exchange: successes only (no starts, no run twice), then a
        claim; the one-statement path on PostgreSQL. Mostly of the attempts now
        executing, as a worker's are, and some stale."""
        attempts = st.sampled_from(sorted(self.issued))
        executing = sorted(a for _, a in self._current({RunStatus.EXECUTING}))
        mine = st.sampled_from(executing) if executing else attempts
        picks = data.draw(st.lists(st.one_of(mine, attempts), min_size=1, max_size=4))
        self._exchange([], [(a, True) for a in dict.fromkeys(picks)], worker, limit, start)

    def _exchange(
        self,
        start_picks: list[str],
        report_picks: list[tuple[str, bool]],
        worker: int,
        limit: int,
        start: int,
    ) -> None:
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
        """An idle worker's claims take what is queued for it, until one parks and
        waits for work; a trigger then hands it its run (one statement)."""
        for rows in self.run(self._parked_then_trigger(self.workers[worker], start)):
            self._claimed(rows, start)

    async def _parked_then_trigger(self, worker: Any, start: int) -> list[list[Any]]:
        """What each claim returned: at once from the queue, then the run handed over."""
        handoffs, answers = self.engine.handoffs, list[list[Any]]()
        while not answers or answers[-1]:  # a claim answers at once only with runs
            before = handoffs.parked_count(self.env_id)
            claim = asyncio.create_task(
                self.engine.dequeue.claim_or_wait(worker, 4, 10, start=start)
            )
            async with asyncio.timeout(5):  # parked, or answered at once from the queue
                while not claim.done() and handoffs.parked_count(self.env_id) == before:
                    await asyncio.sleep(0.001)
            if not claim.done():
                result = await self.engine.enqueue.trigger(self.env_id, TriggerRequest("t"))
                self.run_ids.append(result.id)
                answers.append(await asyncio.wait_for(claim, 5))
                assert answers[-1], "a parked claim was neither handed its run nor woken"
                return answers
            answers.append(claim.result())
        return answers

    def _batch(
        self, start_picks: list[str], report_picks: list[tuple[str, bool]]
    ) -> tuple[list[Start], list[bool], list[Report], list[bool]]:
        """The starts and reports of these picks, and which of them should count."""
        rows = self._rows(sorted(set(self.issued.values())))
        status = {r: RunStatus(row.status) for r, row in rows.items()}
        current = {r: row.current_attempt_id for r, row in rows.items()}
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
    def stored_runs_agree_with_their_history_and_attempts(self) -> None:
        for row, events, attempts in self._stored():
            _history_only_moves_forward(row, events)
            _claimed_run_has_its_attempt_row(row, attempts)

    @invariant()
    def nothing_completes_twice(self) -> None:
        assert all(n == 1 for n in self.completions.values())

    # -- liveness ----------------------------------------------------------------------

    def _drain(self) -> None:
        """Drive everything to a final status with well-behaved workers."""
        for _ in range(50):
            pending = [r for r, row in self._rows().items() if RunStatus(row.status) not in FINAL]
            if not pending:
                return
            self.clock.advance(HEARTBEAT + 1)
            self.run(self.engine.maintenance.sweep())
            for row in self.run(self.engine.dequeue.claim(self.workers[0], 10)):
                self.run(self.engine.attempts.start(row.id, row.claimed_attempt_id))
                self.run(self.engine.attempts.succeed(row.id, row.claimed_attempt_id, "drained"))
        stuck = [r for r, row in self._rows().items() if RunStatus(row.status) not in FINAL]
        raise AssertionError(f"runs stuck: {stuck}")


def _history_only_moves_forward(row: Any, events: list[Any]) -> None:
    """A run's history starts when it was triggered, moves only as the table allows,
    stops at a final status, and ends at the run's status."""
    previous: RunStatus | None = None
    for event in events:
        to = RunStatus(event.to_status)
        if previous is None:
            assert event.from_status is None and to in (RunStatus.QUEUED, RunStatus.DELAYED)
        else:
            assert event.from_status == previous.value
            assert can_move(previous, to), f"{row.id}: {previous} -> {to}"
            assert previous not in FINAL, f"{row.id} moved after finishing"
        previous = to
    assert previous is not None, f"{row.id} has no history (lost)"
    assert previous.value == row.status


def _claimed_run_has_its_attempt_row(row: Any, attempts: list[Any]) -> None:
    """Whichever path claimed it, a run's current attempt is stored with its number
    and the status its run's gives it."""
    if row.current_attempt_id is None:
        return
    current = [a for a in attempts if a.id == row.current_attempt_id]
    assert [a.number for a in current] == [row.attempt_count]
    status = RunStatus(row.status)
    if status in ATTEMPT_FOR:
        assert current[0].status == ATTEMPT_FOR[status].value, (row.id, status)


SETTINGS = settings(
    max_examples=15,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_run_lifecycle_sqlite() -> None:
    run_machine_on(RunLifecycle, "sqlite", SETTINGS)


def test_run_lifecycle_postgresql(pg_template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL the machine also takes the one-statement paths, and each of them
    does its work at least once: a worker's successes recorded with its claim, and
    a trigger stored claimed for a parked claim."""
    fast = FastPaths().watch(monkeypatch)
    run_machine_on(RunLifecycle, "postgresql", SETTINGS, pg_template)
    assert fast.worked["report and claim"] > 0, fast
    assert fast.worked["hand-off"] > 0, fast
