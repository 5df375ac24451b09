"""The worker API: how workers (which hold no database credentials) take and report work.

Workers authenticate with their environment's secret key. Every report names
the attempt it is about; a report for an attempt that is no longer current
gets 409 and the worker drops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from triggerfish._domain.records import RunRecord
from triggerfish._domain.states import JournalStatus
from triggerfish._domain.traces import Span, SpanEvent, trace_of
from triggerfish.api.deps import EngineDep, WorkerEnvDep
from triggerfish.api.trigger_wire import TriggerBody, TriggerOptions, trigger_request
from triggerfish.api.validated import (
    MAX_SECONDS,
    BadInput,
    Duration,
    Epoch,
    EventName,
    Id,
    Index32,
    Key,
    Name,
    Seconds,
    StrictJsonRoute,
)
from triggerfish.api.waitpoints import base_url, token_request, token_url
from triggerfish.engine import Engine
from triggerfish.engine.attempts import Failure, Outcome, Report, Start
from triggerfish.engine.dequeue import WorkerIdentity
from triggerfish.engine.enqueue import checked_schema
from triggerfish.engine.environments import Environment
from triggerfish.engine.journal import JournalEntry
from triggerfish.engine.waitpoints import WaitSpec
from triggerfish.engine.workers import ImportProblem
from triggerfish.errors import PermissionDenied, StaleTransition, UserError

router = APIRouter(prefix="/worker/v1", tags=["worker"], route_class=StrictJsonRoute)


class QueueManifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=256)


class TaskManifest(BaseModel):
    """What a worker declares about one task; fields beyond these are kept as sent."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=256)
    queue: QueueManifest


class EnvironmentDefaults(BaseModel):
    """What the project's configuration declares for the environment."""

    model_config = ConfigDict(extra="ignore")

    concurrency_limit: int | None = Field(default=None, ge=0)


class ImportErrorBody(BaseModel):
    """A task file the worker could not import (its tasks are not served)."""

    model_config = ConfigDict(extra="ignore")

    file: str = Field(min_length=1, max_length=1000)
    error: str = Field(max_length=10_000)
    #: the last lines of the error's traceback
    lines: list[str] = Field(default_factory=list, max_length=50)


class RegisterBody(BaseModel):
    version: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    concurrency: int = Field(ge=1, le=1000)
    tasks: list[TaskManifest] = Field(max_length=10_000)
    #: sent by workers that read a project configuration (absent: leave it as it is)
    environment: EnvironmentDefaults | None = None
    #: task files that failed to import (the dashboard shows them)
    import_errors: list[ImportErrorBody] = Field(default_factory=list, max_length=1000)

    @field_validator("tasks")
    @classmethod
    def _each_task_once(cls, tasks: list[TaskManifest]) -> list[TaskManifest]:
        seen: set[str] = set()
        for task in tasks:
            if task.id in seen:
                raise ValueError(f"task {task.id!r} is declared twice")
            seen.add(task.id)
        return tasks


class DequeueBody(BaseModel):
    worker_id: Id
    max: int = Field(ge=1, le=100)
    wait: float = Field(default=20.0, ge=0, le=60)
    #: how many of the claimed runs the worker starts at once (free slots): they
    #: come back EXECUTING (``"started": true``) and need no start report
    start: int = Field(default=0, ge=0, le=100)


class CompleteBody(BaseModel):
    run_id: Id
    ok: bool
    output: Any = None
    error: dict[str, Any] | None = None
    kind: Literal["USER", "ABORT", "OOM", "TIMEOUT", "CRASH", "CANCELED"] = "USER"
    decision: dict[str, Any] | None = None


class HeartbeatBody(BaseModel):
    worker_id: Id
    attempt_ids: list[Id]


class LogsBody(BaseModel):
    attempt_id: Id
    lines: list[dict[str, Any]] = Field(max_length=5000)


class MetadataOpsBody(BaseModel):
    attempt_id: Id
    operations: list[dict[str, Any]] = Field(max_length=5000)


_HEX16 = r"^[0-9a-f]{16}$"


class SpanEventIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=256)
    time: Epoch
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=128)


class SpanIn(BaseModel):
    """A span task code opened (the normal OpenTelemetry API), as the span store keeps it."""

    model_config = ConfigDict(extra="ignore")

    span_id: str = Field(pattern=_HEX16)
    parent_span_id: str | None = Field(default=None, pattern=_HEX16)
    name: str = Field(min_length=1, max_length=256)
    start_time: Epoch
    end_time: Epoch
    status: Literal["UNSET", "OK", "ERROR"] = "UNSET"
    attributes: dict[str, Any] = Field(default_factory=dict, max_length=129)
    events: list[SpanEventIn] = Field(default_factory=list, max_length=128)


class SpansBody(BaseModel):
    attempt_id: Id
    spans: list[SpanIn] = Field(max_length=1000)


class ReleaseBody(BaseModel):
    worker_id: Id
    attempt_ids: list[Id]


class WorkerIdBody(BaseModel):
    worker_id: Id


@router.post("/register")
async def register(body: RegisterBody, engine: EngineDep, env: WorkerEnvDep) -> dict[str, Any]:
    worker = await engine.workers.register(
        env.id,
        version=body.version,
        name=body.name,
        concurrency=body.concurrency,
        tasks=[t.model_dump() for t in body.tasks],
        environment=body.environment.model_dump() if body.environment else None,
        import_errors=[
            ImportProblem(e.file, e.error, tuple(line[:2000] for line in e.lines))
            for e in body.import_errors
        ],
    )
    return {
        "worker_id": worker.id,
        "environment": {"id": env.id, "slug": env.slug},
        "heartbeat_timeout": engine.res.settings.heartbeat_timeout,
        # the worker socket's largest frame (larger calls go as requests)
        "socket_max_bytes": engine.res.settings.max_body_bytes,
        # how long a busy worker holds a report batch back (see worker/reports.py)
        "report_linger": engine.report_linger(),
    }


@router.post("/dequeue")
async def dequeue(
    body: DequeueBody, request: Request, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, Any]:
    """Claim up to ``max`` runs; held open up to ``wait`` seconds when there are none."""
    worker = await engine.workers.identity(env.id, body.worker_id)
    wait = min(body.wait, engine.res.settings.dequeue_wait)
    rows = await engine.dequeue.claim_or_wait(
        worker, body.max, wait, gone=request.is_disconnected, start=body.start
    )
    return {"runs": await jobs(engine, env, rows)}


async def jobs(engine: Engine, env: Environment, rows: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """Claimed runs as the worker runs them (also the socket's ``dequeue`` answer)."""
    # the journal travels with the claim: replaying it needs no round trips. A
    # first attempt has none, unless it replays another run's first steps.
    replaying = [r.id for r in rows if r.attempt_count > 1 or r.replay_of is not None]
    journals = await engine.journal.for_runs(replaying) if replaying else {}
    # read afresh for every claim: a change applies to the next attempt, never a running one
    env_vars = await engine.envvars.for_attempts(env.id) if rows else {}
    return [
        {
            "run_id": r.id,
            "attempt_id": r.current_attempt_id,
            "attempt_number": r.attempt_count,
            "task_id": r.task_identifier,
            "payload": r.payload,
            "tags": sorted(r.tags or []),
            "machine": r.machine,
            "max_duration": r.max_duration,
            "environment": {"id": env.id, "slug": env.slug},
            "journal": journals.get(r.id, []),
            "metadata": r.run_metadata,
            "started": r.status == "EXECUTING",
            # what the task process acts with: dies with the attempt (engine/environments.py)
            "credential": engine.environments.attempt_credential(_claimed_attempt(r)),
            "env_vars": env_vars,
            # the run's trace, which the task process's spans join (_domain/traces.py)
            "trace_id": trace_of(r.id, r.root_run_id, r.trace_context)[0],
            "max_attempts": r.max_attempts,
        }
        for r in rows
    ]


def _claimed_attempt(run: RunRecord) -> str:
    """The attempt a claim gave ``run`` (a claimed run always has one)."""
    if run.current_attempt_id is None:
        raise ValueError(f"run {run.id} was handed to a worker without an attempt")
    return run.current_attempt_id


class StartBody(BaseModel):
    run_id: Id


class CompletionItem(CompleteBody):
    attempt_id: Id


class StartItem(StartBody):
    attempt_id: Id


class ClaimBody(BaseModel):
    """Runs to claim along with the reports (never waits: an idle worker long-polls)."""

    worker_id: Id
    max: int = Field(ge=1, le=100)
    start: int = Field(default=0, ge=0, le=100)


class ReportsBody(BaseModel):
    starts: list[StartItem] = Field(default_factory=list, max_length=500)
    completions: list[CompletionItem] = Field(default_factory=list, max_length=500)
    claim: ClaimBody | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ReportsBody:
        if not self.starts and not self.completions:
            raise ValueError("starts, completions: send at least one item")
        return self


@router.post("/reports")
async def reports(body: ReportsBody, engine: EngineDep, env: WorkerEnvDep) -> dict[str, Any]:
    """Report many started and finished attempts at once: one transaction for all.

    Answers follow the items' order. A start answers ``{"attempt_id", "status":
    "EXECUTING"}``; a completion the run's new ``status`` (with ``retry_at``
    when it will be retried). Either answers ``"stale": true`` instead when the
    attempt is no longer current (the item changed nothing). With ``claim`` the
    worker's next runs come back in ``runs``, as from ``/dequeue``: a busy
    worker reports and claims in one request per run.
    """
    starts = [Start(s.run_id, s.attempt_id) for s in body.starts]
    reports = [_report(item) for item in body.completions]
    worker = await _claimer(engine, env, body.claim)
    rows: Sequence[RunRecord] = []
    if worker is None or body.claim is None:
        started, outcomes = await engine.attempts.report_many(starts, reports, env.id)
    else:
        started, outcomes, rows = await engine.dequeue.report_and_claim(
            starts, reports, worker, body.claim.max, body.claim.start
        )
    return {
        "runs": await jobs(engine, env, rows),
        "starts": [
            {"attempt_id": s.attempt_id, "status": "EXECUTING"}
            if ok
            else {"attempt_id": s.attempt_id, "stale": True}
            for s, ok in zip(body.starts, started, strict=True)
        ],
        "completions": [
            _answer(item.attempt_id, outcome)
            for item, outcome in zip(body.completions, outcomes, strict=True)
        ],
    }


async def _claimer(
    engine: Engine, env: Environment, claim: ClaimBody | None
) -> WorkerIdentity | None:
    if claim is None:
        return None
    try:
        return await engine.workers.identity(env.id, claim.worker_id)
    except StaleTransition:
        return None  # a stopped worker claims nothing; its reports still count


def _report(item: CompletionItem) -> Report:
    if item.ok:
        return Report(item.run_id, item.attempt_id, output=item.output)
    failure = Failure(kind=item.kind, error=item.error or {}, decision=item.decision)
    return Report(item.run_id, item.attempt_id, failure=failure)


def _answer(attempt_id: str, outcome: Outcome | None) -> dict[str, Any]:
    if outcome is None:
        return {"attempt_id": attempt_id, "stale": True}
    answer: dict[str, Any] = {"attempt_id": attempt_id, "status": outcome.status.value}
    if outcome.retry_at is not None:
        answer["retry_at"] = outcome.retry_at
    return answer


@router.post("/heartbeat")
async def heartbeat(body: HeartbeatBody, engine: EngineDep, env: WorkerEnvDep) -> dict[str, Any]:
    """Renew the leases of running attempts; lists the ones the worker must stop."""
    await engine.workers.identity(env.id, body.worker_id)
    stop = await engine.attempts.heartbeat(body.worker_id, body.attempt_ids)
    return {"stop": stop}


@router.post("/logs")
async def logs(body: LogsBody, engine: EngineDep, env: WorkerEnvDep) -> dict[str, int]:
    _own_attempt(env, body.attempt_id)
    return {"accepted": await engine.runs.append_logs(env.id, body.attempt_id, body.lines)}


@router.post("/spans")
async def spans(body: SpansBody, engine: EngineDep, env: WorkerEnvDep) -> dict[str, int]:
    """Spans task code opened in an attempt, batched by the worker: kept in the run's
    trace (``GET /api/v1/runs/{id}/trace``) under the step or attempt they nest in."""
    _own_attempt(env, body.attempt_id)
    kept = [
        Span(
            span_id=s.span_id,
            parent_span_id=s.parent_span_id,
            trace_id="",  # the run's: the trace is built with it
            name=s.name,
            kind="user",
            start_time=s.start_time,
            end_time=max(s.end_time, s.start_time),
            status=s.status,
            attributes=s.attributes,
            events=[SpanEvent(e.name, e.time, e.attributes) for e in s.events],
        )
        for s in body.spans
    ]
    return {"accepted": await engine.traces.record_from_attempt(env.id, body.attempt_id, kept)}


@router.post("/metadata")
async def metadata(body: MetadataOpsBody, engine: EngineDep, env: WorkerEnvDep) -> dict[str, Any]:
    """Metadata operations from inside a running attempt, batched by the worker."""
    _own_attempt(env, body.attempt_id)
    doc = await engine.metadata.update_from_attempt(env.id, body.attempt_id, body.operations)
    return {"metadata": doc}


@router.post("/release")
async def release(body: ReleaseBody, engine: EngineDep, env: WorkerEnvDep) -> dict[str, Any]:
    """Give runs back to the queue without spending a retry (graceful shutdown)."""
    await engine.workers.identity(env.id, body.worker_id)
    released = await engine.attempts.release(
        body.attempt_ids, "released by a stopping worker", env.id
    )
    return {"released": released}


@router.post("/deregister")
async def deregister(body: WorkerIdBody, engine: EngineDep, env: WorkerEnvDep) -> dict[str, bool]:
    await engine.workers.identity(env.id, body.worker_id)
    await engine.workers.deregister(body.worker_id)
    return {"ok": True}


# -- durable calls (relayed from task processes) ---------------------------------


class StepDisplay(BaseModel):
    """What a trace shows for a step besides its key."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=256)
    icon: str | None = Field(default=None, max_length=64)
    properties: dict[str, Any] | None = None


class StepTry(BaseModel):
    """One failed try of a step."""

    model_config = ConfigDict(extra="ignore")

    number: Annotated[Index32, Field(ge=1)]
    at: Epoch
    error: dict[str, Any]


def _own_attempt(env: Environment, attempt_id: str) -> None:
    """Refuse (403) a task process acting for an attempt other than its own."""
    if env.attempt is not None and env.attempt.attempt_id != attempt_id:
        raise PermissionDenied("attempt_id: an attempt credential acts for its own attempt only")


async def _attempt_of_env(engine: Engine, env: Environment, attempt_id: str, run_id: str) -> None:
    """Refuse a call for an attempt of another run or environment, for the routes whose
    engine call is scoped by environment but not by attempt."""
    _own_attempt(env, attempt_id)
    await engine.attempts.require_owner(env.id, run_id, attempt_id)


class JournalBody(BaseModel):
    run_id: Id
    seq: Index32
    kind: str = Field(min_length=1, max_length=24)
    name: str = Field(max_length=256)
    status: Literal["OK", "ERROR", "RETRYING"]
    result: Any = None
    error: dict[str, Any] | None = None
    failures: Index32 = 0
    started_at: Epoch | None = None
    display: StepDisplay | None = None
    tries: list[StepTry] | None = Field(default=None, max_length=1000)


@router.post("/attempts/{attempt_id}/journal")
async def journal(
    attempt_id: str, body: JournalBody, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, bool]:
    """Record a durable call's outcome; 409 once the attempt is no longer current."""
    _own_attempt(env, attempt_id)
    entry = JournalEntry(
        seq=body.seq,
        kind=body.kind,
        name=body.name,
        status=JournalStatus(body.status),
        result=body.result,
        error=body.error,
        failures=body.failures,
        started_at=body.started_at,
        display=body.display.model_dump(exclude_none=True) if body.display else None,
        tries=[t.model_dump() for t in body.tries] if body.tries else None,
    )
    await engine.journal.record(body.run_id, attempt_id, entry, env.id)
    return {"ok": True}


class BlobBody(BaseModel):
    run_id: Id
    seq: Index32


@router.post("/attempts/{attempt_id}/blob")
async def blob(
    attempt_id: str, body: BlobBody, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, Any]:
    """A journal result stored out of line, for a replaying task."""
    await _attempt_of_env(engine, env, attempt_id, body.run_id)
    return {"result": await engine.journal.blob(env.id, body.run_id, body.seq)}


class WaitBody(BaseModel):
    run_id: Id
    seq: Index32
    kind: str = Field(min_length=1, max_length=24)
    name: str = Field(max_length=256)
    wait: dict[str, Any]


def wait_spec(wait: dict[str, Any], now: float) -> WaitSpec:
    """The wait a task asked for, in engine terms; 4xx naming the bad field."""
    kind = wait.get("type")
    if kind == "duration":
        seconds = _number(wait, "seconds", 0.0)
        return WaitSpec("duration", due_at=now + max(0.0, seconds))
    if kind == "until":
        return WaitSpec("duration", due_at=min(_number(wait, "at", now), now + MAX_SECONDS))
    if kind == "token":
        return WaitSpec("token", token_id=str(wait.get("id") or ""), schema=_wait_schema(wait))
    if kind == "event":
        name = str(wait.get("name") or "")
        if not name:
            raise UserError("wait.name: an event name is required")
        timeout = _number(wait, "timeout", None) if wait.get("timeout") is not None else None
        match = wait.get("match") or {}
        if not isinstance(match, dict):
            raise UserError("wait.match: must be an object of payload fields")
        event_id = wait.get("id")
        if event_id is not None and (not isinstance(event_id, str) or not 0 < len(event_id) <= 128):
            raise UserError("wait.id: an event id of 1 to 128 characters")
        return WaitSpec(
            "event",
            event_name=name,
            event_filter=match,
            event_id=event_id,
            schema=_wait_schema(wait),
            due_at=now + float(timeout) if timeout is not None else None,
        )
    if kind == "runs":
        items = wait.get("items") or []
        if not items:
            raise UserError("wait.items: at least one run is required")
        children = [
            trigger_request(
                str(item["task_id"]),
                TriggerBody(
                    payload=item.get("payload"),
                    options=TriggerOptions.model_validate(item.get("options") or {}),
                ),
                now,
                wait.get("traceparent"),
            )
            for item in items
        ]
        timeout = _number(wait, "timeout", None) if wait.get("timeout") is not None else None
        return WaitSpec(
            "runs",
            children=children,
            cancel_children=bool(wait.get("cancel_children", True)),
            due_at=now + float(timeout) if timeout is not None else None,
        )
    raise UserError(f"wait.type: unknown wait {kind!r}")


def _wait_schema(wait: dict[str, Any]) -> dict[str, Any] | None:
    """A validated wait's JSON Schema, checked to be one; 422 naming ``wait.schema``."""
    schema = wait.get("schema")
    if schema is None:
        return None
    return checked_schema(schema, "wait.schema")


def _number(wait: dict[str, Any], field: str, default: Any) -> Any:
    """``wait[field]`` as a finite number of seconds (or an epoch) up to 100 years."""
    value = wait.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"wait.{field}: a number of seconds is required")
    if field != "at" and not 0 <= value <= MAX_SECONDS:
        raise BadInput(f"wait.{field}: must be from 0 to {MAX_SECONDS} seconds")
    return float(value)


@router.post("/attempts/{attempt_id}/wait")
async def wait(
    attempt_id: str, body: WaitBody, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, Any]:
    """Suspend the run on a waitpoint (``suspended``), or answer at once (``resolved``)."""
    _own_attempt(env, attempt_id)
    spec = wait_spec(body.wait, engine.res.clock.now())
    return await engine.waitpoints.wait_from_task(
        env.id, body.run_id, attempt_id, seq=body.seq, kind=body.kind, name=body.name, spec=spec
    )


class CreateTokenBody(BaseModel):
    run_id: Id
    seq: Index32
    name: str = Field(max_length=256)
    timeout: Seconds | Annotated[str, Field(max_length=64)] | None = None
    tags: list[Name] = Field(default_factory=list)
    idempotency_key: Key | None = None
    idempotency_key_ttl: Duration | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


@router.post("/attempts/{attempt_id}/create_token")
async def create_token(
    attempt_id: str, body: CreateTokenBody, request: Request, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, Any]:
    _own_attempt(env, attempt_id)
    req = token_request(
        timeout=body.timeout,
        tags=body.tags,
        idempotency_key=body.idempotency_key,
        idempotency_key_ttl=body.idempotency_key_ttl,
        now=engine.res.clock.now(),
        schema=body.schema_,
    )
    base = base_url(engine, request)
    row = await engine.waitpoints.create_token_from_task(
        env.id,
        body.run_id,
        attempt_id,
        seq=body.seq,
        name=body.name,
        req=req,
        url_for=lambda r: token_url(base, r),
    )
    return {"id": row.id, "url": token_url(base, row)}


class CompleteTokenBody(BaseModel):
    run_id: Id
    id: str
    data: Any = None


@router.post("/attempts/{attempt_id}/complete_token")
async def complete_token(
    attempt_id: str, body: CompleteTokenBody, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, bool]:
    await _attempt_of_env(engine, env, attempt_id, body.run_id)
    await engine.waitpoints.complete_token(env.id, body.id, body.data)
    return {"success": True}


class SendEventBody(BaseModel):
    run_id: Id
    name: EventName
    payload: Any = None
    id: Id | None = None


@router.post("/attempts/{attempt_id}/send_event")
async def send_event(
    attempt_id: str, body: SendEventBody, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, Any]:
    await _attempt_of_env(engine, env, attempt_id, body.run_id)
    sent = await engine.events.send(env.id, body.name, body.payload, body.id)
    return {
        "id": sent.id,
        "runs": sent.run_ids,
        "waitsResolved": sent.waits_resolved,
        "isCached": sent.is_cached,
    }


class KvBody(BaseModel):
    run_id: Id
    key: Key
    value: Any = None
    ttl: Seconds | None = None


@router.post("/attempts/{attempt_id}/kv_get")
async def kv_get(
    attempt_id: str, body: KvBody, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, Any]:
    await _attempt_of_env(engine, env, attempt_id, body.run_id)
    found, value = await engine.events.kv_get(env.id, body.key)
    return {"found": found, "value": value}


@router.post("/attempts/{attempt_id}/kv_set")
async def kv_set(
    attempt_id: str, body: KvBody, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, bool]:
    await _attempt_of_env(engine, env, attempt_id, body.run_id)
    await engine.events.kv_set(env.id, body.key, body.value, body.ttl)
    return {"ok": True}


@router.post("/attempts/{attempt_id}/kv_delete")
async def kv_delete(
    attempt_id: str, body: KvBody, engine: EngineDep, env: WorkerEnvDep
) -> dict[str, bool]:
    await _attempt_of_env(engine, env, attempt_id, body.run_id)
    return {"deleted": await engine.events.kv_delete(env.id, body.key)}
