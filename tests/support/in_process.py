"""An in-process worker for durable-execution tests: real engine and store, no HTTP.

Claims runs like a worker, runs each attempt with the real replay runtime in a
thread (the task's own event loop), relays its durable calls straight to the
engine, and reports the outcome the way the worker API would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, assert_never

from triggerfish._domain.attempts import (
    Abandoned,
    AttemptOutcome,
    EnvironmentRef,
    ErrorInfo,
    Failed,
    Job,
    Succeeded,
    Suspended,
)
from triggerfish.api.waitpoints import token_request, token_url
from triggerfish.api.worker_api import wait_spec
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Failure
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.journal import JournalEntry
from triggerfish.errors import StaleTransition, StoreUnavailable, TriggerfishError
from triggerfish.sdk._registry import TaskRegistry
from triggerfish.sdk._runtime import run_attempt


@contextlib.contextmanager
def outage(engine: Engine) -> Iterator[None]:
    """The store refuses every connection, as a stopped PostgreSQL does."""
    db = engine.res.db

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise StoreUnavailable("the database connection failed (ConnectionRefusedError)")

    saved = {name: getattr(db, name) for name in ("read", "write", "ping")}
    for name in saved:
        setattr(db, name, refused)
    try:
        yield
    finally:
        for name in saved:
            delattr(db, name)  # the class's own methods again


class SimulatedCrash(BaseException):
    """Raised by test code to stand for the task process dying right there."""


#: how an attempt ends when test code raises ``SimulatedCrash`` in it
CRASHED = Failed(ErrorInfo("Crash", "simulated crash", "", "CRASH"))


@dataclass
class Outcome:
    run_id: str
    outcome: AttemptOutcome

    @property
    def output(self) -> Any:
        assert isinstance(self.outcome, Succeeded), self.outcome
        return self.outcome.output


async def bare_worker(engine: Engine, env_id: str, version: str = "v1") -> WorkerIdentity:
    """A worker serving task ``t`` that runs nothing itself: tests drive its calls by hand."""
    return await engine.workers.register(
        env_id,
        version=version,
        name="bare",
        concurrency=1,
        tasks=[{"id": "t", "retry": {}, "machine": "small-1x", "queue": {"name": "task/t"}}],
    )


async def in_process_worker(
    engine: Engine, registry: TaskRegistry, version: str = "v1"
) -> tuple[str, InProcessWorker]:
    """The dev environment's id, and an in-process worker registered there for ``registry``."""
    env = await engine.environments.by_slug("dev")
    return env.id, await InProcessWorker(engine, registry, env.id, version).register()


async def trigger_run(engine: Engine, env_id: str, task_id: str, payload: Any = ...) -> str:
    """Trigger ``task_id``; the new run's id. Without a payload, an empty object,
    which a task typed ``payload: dict`` accepts (it refuses ``None`` at the door)."""
    given = {} if payload is ... else payload
    return (await engine.enqueue.trigger(env_id, TriggerRequest(task_id, given))).id


async def run_record(engine: Engine, env_id: str, run_id: str) -> Any:
    """The run as the store has it now."""
    return (await engine.runs.retrieve(env_id, run_id)).run


class InProcessWorker:
    def __init__(
        self, engine: Engine, registry: TaskRegistry, env_id: str, version: str = "v1"
    ) -> None:
        self.engine, self.registry, self.env_id, self.version = engine, registry, env_id, version
        self.identity: WorkerIdentity | None = None

    async def register(self) -> InProcessWorker:
        self.identity = await self.engine.workers.register(
            self.env_id,
            version=self.version,
            name="in-process",
            concurrency=1,
            tasks=[t.manifest() for t in self.registry],
        )
        return self

    async def run_one(self) -> Outcome | None:
        """Claim and run one attempt; ``None`` when nothing is due."""
        assert self.identity is not None
        rows = await self.engine.dequeue.claim(self.identity, 1)
        if not rows:
            return None
        row = rows[0]
        attempt_id = row.claimed_attempt_id
        await self.engine.attempts.start(row.id, attempt_id, self.env_id)
        journal = (await self.engine.journal.for_runs([row.id]))[row.id]
        job = Job(
            run_id=row.id,
            attempt_id=attempt_id,
            attempt_number=row.attempt_count,
            task_id=row.task_identifier,
            payload=row.payload,
            tags=(),
            environment=EnvironmentRef(self.env_id, "dev"),
            machine=row.machine,
            max_duration=None,
            journal=journal,
            max_attempts=row.max_attempts,
        )
        main = asyncio.get_running_loop()

        def transport(op: str, body: dict[str, Any]) -> dict[str, Any]:
            call = self._relay(row.id, attempt_id, op, body)
            return asyncio.run_coroutine_threadsafe(call, main).result(30)

        def attempt() -> AttemptOutcome:
            loop = asyncio.new_event_loop()
            try:
                return run_attempt(self.registry, job, loop, transport)
            except SimulatedCrash:
                return CRASHED
            finally:
                loop.close()

        outcome = await asyncio.to_thread(attempt)
        await self._report(row.id, attempt_id, outcome)
        return Outcome(row.id, outcome)

    async def run_until_idle(self, limit: int = 50) -> list[Outcome]:
        done: list[Outcome] = []
        for _ in range(limit):
            outcome = await self.run_one()
            if outcome is None:
                return done
            done.append(outcome)
        raise AssertionError(f"still runs to do after {limit} attempts")

    async def _relay(
        self, run_id: str, attempt_id: str, op: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            if op == "journal":
                fields = {k: v for k, v in body.items() if k != "run_id"}
                await self.engine.journal.record(
                    run_id, attempt_id, JournalEntry(**fields), self.env_id
                )
                return {"ok": True}
            if op == "blob":
                return {"result": await self.engine.journal.blob(self.env_id, run_id, body["seq"])}
            if op == "wait":
                spec = wait_spec(body["wait"], self.engine.res.clock.now())
                return await self.engine.waitpoints.wait_from_task(
                    self.env_id,
                    run_id,
                    attempt_id,
                    seq=body["seq"],
                    kind=body["kind"],
                    name=body["name"],
                    spec=spec,
                )
            if op == "create_token":
                req = token_request(
                    timeout=body.get("timeout"),
                    tags=body.get("tags") or [],
                    idempotency_key=body.get("idempotency_key"),
                    idempotency_key_ttl=None,
                    now=self.engine.res.clock.now(),
                    schema=body.get("schema"),
                )
                row = await self.engine.waitpoints.create_token_from_task(
                    self.env_id,
                    run_id,
                    attempt_id,
                    seq=body["seq"],
                    name=body["name"],
                    req=req,
                    url_for=lambda r: token_url("http://test", r),
                )
                return {"id": row.id, "url": token_url("http://test", row)}
            if op == "kv_get":
                found, value = await self.engine.events.kv_get(self.env_id, body["key"])
                return {"found": found, "value": value}
            if op == "kv_set":
                await self.engine.events.kv_set(
                    self.env_id, body["key"], body["value"], body.get("ttl")
                )
                return {"ok": True}
            if op == "kv_delete":
                return {"deleted": await self.engine.events.kv_delete(self.env_id, body["key"])}
            if op == "send_event":
                sent = await self.engine.events.send(
                    self.env_id, body["name"], body.get("payload"), body.get("id")
                )
                return {"id": sent.id, "runs": sent.run_ids}
            if op == "complete_token":
                await self.engine.waitpoints.complete_token(self.env_id, body["id"], body["data"])
                return {"success": True}
        except StaleTransition as exc:
            return {"_status": 409, "error": str(exc)}
        except TriggerfishError as exc:
            return {"_status": getattr(exc, "status_code", 500), "error": str(exc)}
        return {"_status": 404, "error": f"unknown op {op}"}

    async def _report(self, run_id: str, attempt_id: str, outcome: AttemptOutcome) -> None:
        """What the worker API would do with the report the worker sends (if any)."""
        match outcome:
            case Suspended() | Abandoned():
                return
            case Succeeded(output):
                await self.engine.attempts.succeed(run_id, attempt_id, output, self.env_id)
            case Failed(error, decision):
                described = {"name": error.name, "message": error.message}
                described["stack_trace"] = error.stack_trace
                decided = None
                if decision is not None:
                    decided = {"action": decision.action, "delay": decision.delay}
                failure = Failure(error.kind, described, decided)
                await self.engine.attempts.fail(run_id, attempt_id, failure, self.env_id)
            case unknown:
                assert_never(unknown)
