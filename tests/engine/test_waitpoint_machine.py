"""Random interleavings of waits, token completions from two servers, timeouts,
cancels and resumed runs, against the real store. Whatever the order: a waitpoint
resolves once and never changes afterwards, every waiting run resumes once with
exactly the token's outcome, and no run waits on a resolved token (none is stuck)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from tests.support.machines import StoreMachine, run_machine_on
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.engine.waitpoints import TokenRequest, WaitSpec
from triggerfish.errors import ConflictError
from triggerfish.store import journal as journal_store
from triggerfish.store import runs as run_store
from triggerfish.store import waitpoints as wp_store

MANIFEST = {
    "id": "t",
    "retry": {"max_attempts": 1},
    "machine": "micro",
    "queue": {"name": "task/t", "concurrency_limit": None},
}


class Waits(StoreMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_000_000.0)
        url = self.db_url
        settings_ = ServerSettings(database_url=url)
        self.engines = [Engine.create(settings_, clock=self.clock) for _ in range(2)]
        for engine in self.engines:
            self.run(engine.start(background=False))
        self.engine = self.engines[0]
        self.run(self.engine.environments.bootstrap())
        self.env_id = self.run(self.engine.environments.by_slug("dev")).id
        self.worker = self.run(
            self.engine.workers.register(
                self.env_id, version="v1", name="w", concurrency=100, tasks=[MANIFEST]
            )
        )
        self.tokens: list[str] = []
        self.waiting: dict[str, str] = {}  # run id -> token id it waits on
        self.final: dict[str, tuple[str, Any]] = {}  # token -> first final (status, output)

    @staticmethod
    async def _together(*coros: Any) -> list[Any]:
        """Run concurrently (two servers racing), inside the machine's loop."""
        return list(await asyncio.gather(*coros))

    def teardown(self) -> None:
        for engine in self.engines:
            self.run(engine.close())
        self.release_store()

    # -- rules ---------------------------------------------------------------------

    @rule(timeout=st.integers(10, 100))
    def create_token(self, timeout: int) -> None:
        req = TokenRequest(timeout_at=self.clock.now() + timeout)
        row, _ = self.run(self.engine.waitpoints.create_token(self.env_id, req))
        self.tokens.append(row.id)

    @precondition(lambda self: self.tokens)
    @rule(pick=st.integers(0, 50))
    def a_run_waits_on_a_token(self, pick: int) -> None:
        token = self.tokens[pick % len(self.tokens)]
        self.resumed_runs_finish()  # so the claim below takes the new run
        run_id = self.run(self.engine.enqueue.trigger(self.env_id, TriggerRequest("t", {}))).id
        [row] = self.run(self.engine.dequeue.claim(self.worker, 1))
        assert row.id == run_id
        self.run(self.engine.attempts.start(row.id, row.claimed_attempt_id))
        answer = self.run(
            self.engine.waitpoints.wait_from_task(
                self.env_id,
                row.id,
                row.claimed_attempt_id,
                seq=0,
                kind="token.wait",
                name="token",
                spec=WaitSpec("token", token_id=token),
            )
        )
        if answer["status"] == "suspended":
            self.waiting[run_id] = token
        else:  # resolved already: the task goes on with the token's outcome
            self._check_result(token, answer["result"])
            self.run(self.engine.attempts.succeed(row.id, row.claimed_attempt_id, "went on"))

    @precondition(lambda self: self.tokens)
    @rule(pick=st.integers(0, 50), both=st.booleans(), data=st.integers(0, 9))
    def complete_token(self, pick: int, both: bool, data: int) -> None:
        token = self.tokens[pick % len(self.tokens)]

        async def complete(engine: Engine, value: int) -> None:
            with contextlib.suppress(ConflictError):  # it may have timed out first
                await engine.waitpoints.complete_token(self.env_id, token, {"v": value})

        engines = self.engines if both else self.engines[:1]
        self.run(self._together(*(complete(e, data + i) for i, e in enumerate(engines))))

    @rule(seconds=st.integers(1, 60))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.run(self._together(*(e.waitpoints.resolve_due() for e in self.engines)))

    @precondition(lambda self: self.waiting)
    @rule(pick=st.integers(0, 50))
    def cancel_a_waiting_run(self, pick: int) -> None:
        run_id = sorted(self.waiting)[pick % len(self.waiting)]
        self.run(self.engine.runs.cancel(self.env_id, run_id))
        self.waiting.pop(run_id)

    @rule()
    def resumed_runs_finish(self) -> None:
        for row in self.run(self.engine.dequeue.claim(self.worker, 100)):
            self.run(self.engine.attempts.start(row.id, row.claimed_attempt_id))
            entry = self._entry(row.id)
            assert entry is not None and entry.status == "OK"
            self._check_result(self.waiting.pop(row.id), entry.result)
            self.run(self.engine.attempts.succeed(row.id, row.claimed_attempt_id, "resumed"))

    # -- invariants ------------------------------------------------------------------

    def _token(self, token_id: str) -> Any:
        async def read() -> Any:
            async with self.engine.res.db.read() as conn:
                return await wp_store.get(conn, token_id)

        return self.run(read())

    def _entry(self, run_id: str) -> Any:
        async def read() -> Any:
            async with self.engine.res.db.read() as conn:
                return await journal_store.entry(conn, run_id, 0)

        return self.run(read())

    def _check_result(self, token_id: str, result: dict[str, Any]) -> None:
        token = self._token(token_id)
        assert token.status != "PENDING"
        assert result["ok"] is (token.status == "COMPLETED")
        assert result.get("output", result.get("error")) == token.output

    @invariant()
    def a_resolved_token_never_changes(self) -> None:
        for token_id in self.tokens:
            token = self._token(token_id)
            if token.status == "PENDING":
                continue
            seen = self.final.setdefault(token_id, (token.status, token.output))
            assert seen == (token.status, token.output)

    @invariant()
    def no_run_waits_on_a_resolved_token_and_none_resumed_twice(self) -> None:
        async def read() -> list[Any]:
            async with self.engine.res.db.read() as conn:
                return [await run_store.list_events(conn, r) for r in self.waiting]

        for run_id, history in zip(list(self.waiting), self.run(read()), strict=True):
            resumes = [e for e in history if (e.from_status, e.to_status) == ("WAITING", "QUEUED")]
            assert len(resumes) <= 1
            if self._token(self.waiting[run_id]).status == "PENDING":
                assert not resumes and history[-1].to_status == "WAITING"
            else:
                assert len(resumes) == 1


SETTINGS = settings(
    max_examples=10,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_waitpoints_sqlite() -> None:
    run_machine_on(Waits, "sqlite", SETTINGS)


def test_waitpoints_postgresql(pg_template: str) -> None:
    run_machine_on(Waits, "postgresql", SETTINGS, pg_template)
