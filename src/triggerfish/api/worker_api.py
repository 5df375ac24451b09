"""The worker API: how workers (which hold no database credentials) take and report work.

Workers authenticate with their environment's secret key. Every report names
the attempt it is about; a report for an attempt that is no longer current
gets 409 and the worker drops it.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.engine.attempts import Failure

router = APIRouter(prefix="/worker/v1", tags=["worker"])


class RegisterBody(BaseModel):
    version: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    concurrency: int = Field(ge=1, le=1000)
    tasks: list[dict[str, Any]]


class DequeueBody(BaseModel):
    worker_id: str
    max: int = Field(ge=1, le=100)
    wait: float = Field(default=20.0, ge=0, le=60)


class CompleteBody(BaseModel):
    run_id: str
    ok: bool
    output: Any = None
    error: dict[str, Any] | None = None
    kind: Literal["USER", "ABORT", "OOM", "TIMEOUT", "CRASH", "CANCELED"] = "USER"
    decision: dict[str, Any] | None = None


class HeartbeatBody(BaseModel):
    worker_id: str
    attempt_ids: list[str]


class LogsBody(BaseModel):
    attempt_id: str
    lines: list[dict[str, Any]] = Field(max_length=5000)


class ReleaseBody(BaseModel):
    worker_id: str
    attempt_ids: list[str]


class WorkerIdBody(BaseModel):
    worker_id: str


@router.post("/register")
async def register(body: RegisterBody, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    worker = await engine.workers.register(
        env.id,
        version=body.version,
        name=body.name,
        concurrency=body.concurrency,
        tasks=body.tasks,
    )
    return {
        "worker_id": worker.id,
        "environment": {"id": env.id, "slug": env.slug},
        "heartbeat_timeout": engine.res.settings.heartbeat_timeout,
    }


@router.post("/dequeue")
async def dequeue(
    body: DequeueBody, request: Request, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Claim up to ``max`` runs; held open up to ``wait`` seconds when there are none."""
    worker = await engine.workers.identity(env.id, body.worker_id)
    wait = min(body.wait, engine.res.settings.dequeue_wait)
    rows = await engine.dequeue.claim_or_wait(worker, body.max, wait, gone=request.is_disconnected)
    return {
        "runs": [
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
            }
            for r in rows
        ]
    }


class StartBody(BaseModel):
    run_id: str


@router.post("/attempts/{attempt_id}/start")
async def start(attempt_id: str, body: StartBody, engine: EngineDep, env: EnvDep) -> dict[str, str]:
    row = await engine.attempts.start(body.run_id, attempt_id, env.id)
    return {"status": row.status}


@router.post("/attempts/{attempt_id}/complete")
async def complete(
    attempt_id: str, body: CompleteBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    if body.ok:
        outcome = await engine.attempts.succeed(body.run_id, attempt_id, body.output, env.id)
    else:
        failure = Failure(kind=body.kind, error=body.error or {}, decision=body.decision)
        outcome = await engine.attempts.fail(body.run_id, attempt_id, failure, env.id)
    answer: dict[str, Any] = {"status": outcome.status.value}
    if outcome.retry_at is not None:
        answer["retry_at"] = outcome.retry_at
    return answer


@router.post("/heartbeat")
async def heartbeat(body: HeartbeatBody, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Renew the leases of running attempts; lists the ones the worker must stop."""
    await engine.workers.identity(env.id, body.worker_id)
    stop = await engine.attempts.heartbeat(body.worker_id, body.attempt_ids)
    return {"stop": stop}


@router.post("/logs")
async def logs(body: LogsBody, engine: EngineDep, env: EnvDep) -> dict[str, int]:
    return {"accepted": await engine.runs.append_logs(body.attempt_id, body.lines)}


@router.post("/release")
async def release(body: ReleaseBody, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Give runs back to the queue without spending a retry (graceful shutdown)."""
    await engine.workers.identity(env.id, body.worker_id)
    released = await engine.attempts.release(
        body.attempt_ids, "released by a stopping worker", env.id
    )
    return {"released": released}


@router.post("/deregister")
async def deregister(body: WorkerIdBody, engine: EngineDep, env: EnvDep) -> dict[str, bool]:
    await engine.workers.identity(env.id, body.worker_id)
    await engine.workers.deregister(body.worker_id)
    return {"ok": True}
