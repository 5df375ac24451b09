"""Run management beyond trigger/retrieve/list/cancel: reschedule, replay,
metadata and tags (WIRE.md §5 and §12 paths)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from triggerfish.api import serialize
from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.api.trigger_wire import TriggerBody, TriggerOptions, delay_until, trigger_request
from triggerfish.api.validated import (
    Duration,
    Key,
    Name,
    PositiveInt64,
    Priority,
    Seconds,
    StrictJsonRoute,
    Text,
    loads,
)
from triggerfish.errors import InvalidTaskOptions, UserError

router = APIRouter(tags=["runs"], route_class=StrictJsonRoute)


class RescheduleBody(BaseModel):
    #: seconds from now, a duration like "1h", or an ISO date
    delay: Seconds | Annotated[str, Field(max_length=64)]


class ReplayBody(BaseModel):
    """Trigger.dev's replay body: every field optional, unknown fields ignored (WIRE §16)."""

    model_config = ConfigDict(extra="ignore")

    payload: Any = None
    payloadType: Text | None = None
    metadata: dict[str, Any] | None = None
    tags: Name | list[Name] | None = None
    queue: Name | None = None
    concurrencyKey: Key | None = None
    machine: Text | None = None
    version: Text | None = None
    region: Text | None = None
    delay: Seconds | Annotated[str, Field(max_length=64)] | None = None
    ttl: Duration | None = None
    idempotencyKey: Annotated[Key, Field(max_length=128)] | None = None
    idempotencyKeyTTL: Duration | None = None
    maxAttempts: int | None = Field(default=None, ge=1, le=100)
    maxDuration: Annotated[Seconds, Field(gt=0)] | None = None
    priority: Priority | None = None
    #: Triggerfish: reuse the original's journal before this step (1-based)
    fromStep: PositiveInt64 | None = None
    #: Triggerfish: with ``fromStep``, reuse tokens completed before that step
    #: (by default they become new pending tokens)
    reuseCompletedTokens: bool = False


class MetadataBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, Any] | None = None
    operations: list[dict[str, Any]] | None = Field(default=None, max_length=1000)


class TagsBody(BaseModel):
    tags: Name | list[Name]


@router.post("/api/v1/runs/{run_id}/reschedule")
async def reschedule_run(
    run_id: str, body: RescheduleBody, request: Request, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Move a DELAYED run's start (``delay``: a duration from now or a date)."""
    try:
        until = delay_until(body.delay, engine.res.clock.now())
    except ValueError as exc:
        raise UserError(str(exc).replace("options.", "")) from None
    assert until is not None
    await engine.runs.reschedule(env.id, run_id, until)
    detail = await engine.runs.retrieve(env.id, run_id)
    reasons = await engine.queues.explain(env.id, [detail.run])
    run = serialize.run_object(detail, env.slug, env.id, reasons.get(run_id))
    return serialize.for_v3_client(run) if serialize.is_v3_client(request.headers) else run


@router.post("/api/v1/runs/{run_id}/replay")
async def replay_run(
    run_id: str, request: Request, engine: EngineDep, env: EnvDep
) -> dict[str, str]:
    """A new run with the original's payload and options (or the body's), linked to it
    (``replayedFromRunId``); ``fromStep`` reuses the original's journal before that step."""
    raw = await request.body()
    overrides: dict[str, Any] = {}
    from_step: int | None = None
    reuse_tokens = False
    if raw.strip():
        try:
            body = ReplayBody.model_validate(loads(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise UserError(f"{where}: {first['msg']}") from None
        except ValueError as exc:
            raise UserError(f"malformed JSON body: {exc}") from None
        overrides = _replay_overrides(body, engine.res.clock.now())
        from_step = body.fromStep
        reuse_tokens = body.reuseCompletedTokens
    new_id = await engine.replays.replay(
        env.id, run_id, from_step, overrides, reuse_tokens=reuse_tokens
    )
    return {"id": new_id}


def _replay_overrides(body: ReplayBody, now: float) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True)
    options = TriggerOptions.model_validate(
        {
            k: ({"name": v} if k == "queue" else v)
            for k, v in given.items()
            if k not in ("payload", "version", "region", "fromStep", "reuseCompletedTokens")
        }
    )
    req = trigger_request("-", TriggerBody(payload=body.payload, options=options), now)
    names = {
        "payload": "payload",
        "metadata": "metadata",
        "tags": "tags",
        "queue": "queue",
        "concurrencyKey": "concurrency_key",
        "machine": "machine",
        "delay": "delay_until",
        "ttl": "ttl",
        "idempotencyKey": "idempotency_key",
        "idempotencyKeyTTL": "idempotency_key_ttl",
        "maxAttempts": "max_attempts",
        "maxDuration": "max_duration",
        "priority": "priority",
    }
    out = {attr: getattr(req, attr) for key, attr in names.items() if key in given}
    if "ttl" in given:
        out["ttl_text"] = req.ttl_text
    return out


@router.get("/api/v1/runs/{run_id}/metadata")
async def get_metadata(run_id: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return {"metadata": await engine.metadata.get(env.id, run_id)}


@router.put("/api/v1/runs/{run_id}/metadata")
async def update_metadata(
    run_id: str, body: MetadataBody, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Replace the run's metadata (``metadata``) and/or apply ``operations`` in order."""
    doc = await engine.metadata.update(
        env.id, run_id, replace=body.metadata, operations=body.operations
    )
    return {"metadata": doc}


@router.post("/api/v1/runs/{run_id}/tags")
async def add_tags(run_id: str, body: TagsBody, engine: EngineDep, env: EnvDep) -> dict[str, str]:
    tags = [body.tags] if isinstance(body.tags, str) else body.tags
    for tag in tags:
        if not 0 < len(tag) <= 128:
            raise InvalidTaskOptions(f"tags: each tag must be 1 to 128 characters, got {len(tag)}")
    result = await engine.runs.add_tags(env.id, run_id, tags)
    return {"message": f"run {run_id} has tags: {', '.join(result)}"}
