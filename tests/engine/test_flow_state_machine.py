"""Random interleavings of triggers (with keys and idempotency keys), claims by
two workers, starts, completions, failures, cancels, pauses, limit changes and
time passing, against the real store. Whatever the order: no claim exceeds a
queue, key, environment or rate limit, a paused queue starts nothing, no attempt
is handed out twice, an idempotency key names one run, and every run can still
be driven to a final status (none is lost)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from tests.support.machines import FastPaths, StoreMachine, run_machine_on
from triggerfish._domain.states import ACTIVE, FINAL, RunStatus
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Failure, Report
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.queues import QueueRef
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import StaleTransition
from triggerfish.store import runs as run_store

POLICY = {"max_attempts": 2, "factor": 1, "min_delay": 0, "max_delay": 0, "jitter": 0}
RATE = (3, 60.0)
#: seconds a claim waits for work in ``trigger_to_a_parked_claim`` (real time)
PARKED_WAIT = 2.0


def _manifest(task_id: str, queue: dict[str, Any]) -> dict[str, Any]:
    return {"id": task_id, "retry": POLICY, "machine": "micro", "queue": queue}


def _tasks(limited: bool) -> list[dict[str, Any]]:
    """The tasks, their queues with their limits, or none (then nothing but the
    environment's own limit, a run-time override or a pause constrains a claim)."""
    shared: dict[str, Any] = {"name": "shared"}
    rated: dict[str, Any] = {"name": "rated"}
    if limited:
        shared.update(concurrency_limit=3, concurrency_key_limit=2)
        rated["rate_limit"] = list(RATE)
    return [_manifest("a", shared), _manifest("b", shared), _manifest("r", rated)]


class FlowControl(StoreMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(2_000_000.0)
        url = self.db_url
        self.engine = Engine.create(
            ServerSettings(database_url=url, heartbeat_timeout=30), clock=self.clock
        )
        self.run(self.engine.start(background=False))
        self.run(self.engine.environments.bootstrap())
        self.env_id = self.run(self.engine.environments.by_slug("dev")).id
        self.workers = [
            self.run(
                self.engine.workers.register(
                    self.env_id, version="v1", name=f"w{i}", concurrency=8, tasks=_tasks(True)
                )
            )
            for i in range(2)
        ]
        #: the queues' declared limits are in force (a deploy may lift them)
        self.limited = True
        self.overridden = False
        self.env_limit: int | None = None
        self.run_ids: list[str] = []
        self.issued: dict[str, str] = {}
        self.by_key: dict[tuple[str, str], str] = {}
        self.rated_claims: list[float] = []
        self.paused: set[str] = set()

    def teardown(self) -> None:
        try:
            self._drain()
        finally:
            self.run(self.engine.close())
            self.release_store()

    # -- helpers -------------------------------------------------------------------------

    def _rows(self) -> list[Any]:
        async def get() -> list[Any]:
            async with self.engine.res.db.read() as conn:
                return [await run_store.get_by_id(conn, r) for r in self.run_ids]

        return list(self.run(get()))

    def _active(self) -> list[Any]:
        return [r for r in self._rows() if RunStatus(r.status) in ACTIVE]

    def _limits(self) -> tuple[int | None, int | None, int | None]:
        shared = self.run(self.engine.queues.retrieve(self.env_id, QueueRef("custom", "shared")))
        env_limit, _ = self.run(self.engine.queues.environment_limit(self.env_id))
        return shared.limit, shared.queue.concurrency_key_limit, env_limit

    @initialize(limited=st.booleans())
    def begin(self, limited: bool) -> None:
        """Start with limits (the general claim), or none (the one-statement paths)."""
        self.deploy(limited)
        self.change_environment_limit(5 if limited else None)

    # -- rules ---------------------------------------------------------------------------

    @rule(
        task=st.sampled_from(["a", "b", "r"]),
        key=st.sampled_from([None, "A", "B", "C"]),
        idem=st.sampled_from([None, None, "k1", "k2"]),
        priority=st.sampled_from([0.0, 0.0, 5.0]),
        n=st.integers(1, 4),
    )
    def trigger(
        self, task: str, key: str | None, idem: str | None, priority: float, n: int
    ) -> None:
        for _ in range(n):
            req = TriggerRequest(task, concurrency_key=key, idempotency_key=idem, priority=priority)
            result = self.run(self.engine.enqueue.trigger(self.env_id, req))
            if idem is not None:
                known = self.by_key.setdefault((task, idem), result.id)
                assert result.id == known, "an idempotency key named a second run"
                assert result.is_cached == (result.id in self.run_ids)
            if result.id not in self.run_ids:
                self.run_ids.append(result.id)

    @rule(worker=st.integers(0, 1), limit=st.integers(1, 6))
    def claim(self, worker: int, limit: int) -> None:
        before = {r.id for r in self._active()}
        self._check_claimed(
            self.run(self.engine.dequeue.claim(self.workers[worker], limit)), before
        )

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), worker=st.integers(0, 1), limit=st.integers(1, 6))
    def report_and_claim(self, data: st.DataObject, worker: int, limit: int) -> None:
        """A busy worker's successes, then its claim, in one exchange: one statement on
        PostgreSQL while nothing constrains the environment."""
        attempts = st.sampled_from(sorted(self.issued))
        picks = data.draw(st.lists(attempts, min_size=1, max_size=3, unique=True))
        reports = [Report(self.issued[a], a, {"ok": a}) for a in picks]
        reports = list({r.run_id: r for r in reports}.values())  # one report per run
        before = {r.id for r in self._active()}
        _, _, rows = self.run(
            self.engine.dequeue.report_and_claim([], reports, self.workers[worker], limit)
        )
        before -= {r.run_id for r in reports}  # the reports may have freed their slots
        self._check_claimed(rows, before)

    @precondition(lambda self: self.backend == "postgresql" and self._unconstrained())
    @rule(worker=st.integers(0, 1), task=st.sampled_from(["a", "b", "r"]))
    def trigger_to_a_parked_claim(self, worker: int, task: str) -> None:
        """While nothing constrains the environment, an idle worker's claims take what
        is queued, until one parks; a trigger then hands it its run (one statement)."""
        for rows, before in self.run(self._parked_then_trigger(self.workers[worker], task)):
            self._check_claimed(rows, before)

    async def _parked_then_trigger(
        self, worker: Any, task: str
    ) -> list[tuple[list[Any], set[str]]]:
        """Each claim's runs, with the runs that held a slot before it."""
        handoffs, answers = self.engine.handoffs, list[tuple[list[Any], set[str]]]()
        while True:
            before = {r.id for r in await self._active_now()}
            parked = handoffs.parked_count(self.env_id)
            # a claim that does not park (it may not) gives up after PARKED_WAIT
            claim = asyncio.create_task(self.engine.dequeue.claim_or_wait(worker, 4, PARKED_WAIT))
            async with asyncio.timeout(PARKED_WAIT + 5):  # parked, or answered
                while not claim.done() and handoffs.parked_count(self.env_id) == parked:
                    await asyncio.sleep(0.001)
            if claim.done():
                answers.append((claim.result(), before))
                if answers[-1][0]:
                    continue  # answered at once from the queue: claim again
                return answers
            result = await self.engine.enqueue.trigger(self.env_id, TriggerRequest(task))
            self.run_ids.append(result.id)
            answers.append((await asyncio.wait_for(claim, PARKED_WAIT + 5), before))
            return answers

    async def _active_now(self) -> list[Any]:
        async with self.engine.res.db.read() as conn:
            rows = [await run_store.get_by_id(conn, r) for r in self.run_ids]
        return [r for r in rows if r is not None and RunStatus(r.status) in ACTIVE]

    def _unconstrained(self) -> bool:
        """Whether, by what the machine has done, no limit or pause constrains a claim."""
        return not (self.limited or self.overridden or self.paused) and self.env_limit is None

    @rule(limited=st.booleans())
    def deploy(self, limited: bool) -> None:
        """New code declares the queues' limits, or lifts them all."""
        self.run(
            self.engine.workers.register(
                self.env_id, version="v1", name="deploy", concurrency=8, tasks=_tasks(limited)
            )
        )
        self.limited = limited

    def _check_claimed(self, rows: list[Any], before: set[str]) -> None:
        """No claimed run held a slot, got a second attempt or came from a paused
        queue, and no limit is exceeded now."""
        for row in rows:
            assert row.id not in before, "a run holding a slot was claimed again"
            assert row.current_attempt_id not in self.issued, "an attempt was handed out twice"
            assert row.queue_name not in self.paused, "a paused queue started a run"
            self.issued[row.claimed_attempt_id] = row.id
        if not rows:
            return
        queue_limit, key_limit, env_limit = self._limits()
        active = self._active()
        if env_limit is not None:
            assert len(active) <= env_limit, "environment limit exceeded"
        shared = [r for r in active if r.queue_name == "shared"]
        if any(r.queue_name == "shared" for r in rows):
            if queue_limit is not None:
                assert len(shared) <= queue_limit, "queue limit exceeded"
            if key_limit is not None:
                for key in {r.concurrency_key for r in rows if r.concurrency_key}:
                    held = [r for r in shared if r.concurrency_key == key]
                    assert len(held) <= key_limit, f"key {key} over its limit"
        now = self.clock.now()
        if self.limited:  # claims count against the rate only while it is declared
            self.rated_claims += [now for r in rows if r.queue_name == "rated"]
        in_window = [t for t in self.rated_claims if t > now - RATE[1]]
        assert len(in_window) <= RATE[0], "rate limit exceeded"

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        attempt_id = data.draw(st.sampled_from(sorted(self.issued)))
        with contextlib.suppress(StaleTransition):
            self.run(self.engine.attempts.start(self.issued[attempt_id], attempt_id))

    @precondition(lambda self: self.issued)
    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data: st.DataObject, ok: bool) -> None:
        attempt_id = data.draw(st.sampled_from(sorted(self.issued)))
        run_id = self.issued[attempt_id]
        try:
            if ok:
                self.run(self.engine.attempts.succeed(run_id, attempt_id, None))
            else:
                failure = Failure("USER", {"name": "E", "message": "boom"})
                self.run(self.engine.attempts.fail(run_id, attempt_id, failure))
        except StaleTransition:
            pass

    @precondition(lambda self: self.run_ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        self.run(self.engine.runs.cancel(self.env_id, data.draw(st.sampled_from(self.run_ids))))

    @rule(queue=st.sampled_from(["shared", "rated"]), pause=st.booleans())
    def pause_or_resume(self, queue: str, pause: bool) -> None:
        ref = QueueRef("custom", queue)
        if pause:
            self.run(self.engine.queues.pause(self.env_id, ref))
            self.paused.add(queue)
        else:
            self.run(self.engine.queues.resume(self.env_id, ref))
            self.paused.discard(queue)

    @rule(limit=st.sampled_from([None, 0, 1, 2, 4]))
    def override_queue_limit(self, limit: int | None) -> None:
        ref = QueueRef("custom", "shared")
        if limit is None:
            self.run(self.engine.queues.reset_limit(self.env_id, ref))
        else:
            self.run(self.engine.queues.override_limit(self.env_id, ref, limit))
        self.overridden = limit is not None

    @rule(limit=st.sampled_from([None, 2, 5]))
    def change_environment_limit(self, limit: int | None) -> None:
        self.run(self.engine.queues.set_environment_limit(self.env_id, limit))
        self.env_limit = limit

    @rule(seconds=st.sampled_from([1.0, 20.0, 61.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.run(self.engine.maintenance.sweep())

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def every_run_is_accounted_for(self) -> None:
        rows = self._rows()
        assert all(r is not None for r in rows), "a run was lost"
        for row in rows:
            if RunStatus(row.status) in ACTIVE:
                assert row.current_attempt_id in self.issued

    # -- liveness --------------------------------------------------------------------------

    def _drain(self) -> None:
        for queue in ("shared", "rated"):
            self.run(self.engine.queues.resume(self.env_id, QueueRef("custom", queue)))
        self.run(self.engine.queues.reset_limit(self.env_id, QueueRef("custom", "shared")))
        self.run(self.engine.queues.set_environment_limit(self.env_id, None))
        for _ in range(60):
            pending = [r for r in self._rows() if RunStatus(r.status) not in FINAL]
            if not pending:
                return
            self.clock.advance(61)
            self.run(self.engine.maintenance.sweep())
            for row in self.run(self.engine.dequeue.claim(self.workers[0], 10)):
                self.run(self.engine.attempts.start(row.id, row.claimed_attempt_id))
                self.run(self.engine.attempts.succeed(row.id, row.claimed_attempt_id, "drained"))
        stuck = [r.id for r in self._rows() if RunStatus(r.status) not in FINAL]
        raise AssertionError(f"runs stuck: {stuck}")


SETTINGS = settings(
    max_examples=20,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_flow_control_sqlite() -> None:
    run_machine_on(FlowControl, "sqlite", SETTINGS)


def test_flow_control_postgresql(pg_template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half the examples start with nothing constrained: there the one-statement
    claim is taken (and must respect a limit set later, as the general claim does)."""
    fast = FastPaths().watch(monkeypatch)
    run_machine_on(FlowControl, "postgresql", SETTINGS, pg_template)
    assert fast.calls["claim"] > 0, fast
