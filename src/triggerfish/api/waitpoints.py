"""Waitpoint tokens on Trigger.dev's paths (WIRE.md §6), plus the callback URL.

A token's ``url`` completes it with a plain ``POST`` of any JSON, without an
API key: the URL carries a per-token secret instead.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from triggerfish._domain.records import WaitpointRecord
from triggerfish._domain.times import to_datetime
from triggerfish._durations import parse_duration
from triggerfish.api import serialize
from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.api.validated import (
    MAX_SECONDS,
    BadInput,
    Duration,
    Key,
    Name,
    Seconds,
    StrictJsonRoute,
    loads,
)
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import checked_schema
from triggerfish.engine.waitpoints import TokenRequest
from triggerfish.errors import UserError

router = APIRouter(tags=["waitpoints"], route_class=StrictJsonRoute)

MAX_TOKEN_TAGS = 10


def base_url(engine: Engine, request: Request) -> str:
    return (engine.res.settings.public_url or str(request.base_url)).rstrip("/")


def token_url(base: str, row: WaitpointRecord) -> str:
    return f"{base}/api/v1/waitpoints/tokens/{row.id}/callback/{row.callback_secret}"


def timeout_at(value: str | float | None, now: float, field: str = "timeout") -> float | None:
    """A duration (``"1h"``, seconds) or an ISO date, as epoch seconds."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        pass
    else:
        if not seconds <= MAX_SECONDS:  # also NaN
            raise BadInput(f"{field}: {value!r} is more than 100 years")
        return now + seconds
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"{field}: {value!r} is neither a duration like '1h30m' nor an ISO date"
        ) from None
    at = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if at - now > MAX_SECONDS:
        raise BadInput(f"{field}: {value!r} is more than 100 years away")
    return at


def token_request(
    *,
    timeout: str | float | None,
    tags: list[str],
    idempotency_key: str | None,
    idempotency_key_ttl: str | float | None,
    now: float,
    schema: Any = None,
) -> TokenRequest:
    if len(tags) > MAX_TOKEN_TAGS:
        raise UserError(f"tags: at most {MAX_TOKEN_TAGS} tags per token, got {len(tags)}")
    for tag in tags:
        if not 0 < len(tag) < 128:
            raise UserError(f"tags: each tag must be 1 to 127 characters, got {len(tag)}")
    ttl = None
    if idempotency_key_ttl is not None:
        try:
            ttl = parse_duration(idempotency_key_ttl)
        except ValueError as exc:
            raise UserError(f"idempotencyKeyTTL: {exc}") from None
    return TokenRequest(
        timeout_at=timeout_at(timeout, now),
        tags=tags,
        idempotency_key=idempotency_key,
        idempotency_key_ttl=ttl,
        schema=checked_schema(schema, "schema") if schema is not None else None,
    )


def token_item(row: WaitpointRecord, base: str, *, with_output: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": row.id,
        "url": token_url(base, row),
        "status": "WAITING" if row.status == "PENDING" else row.status,
        "idempotencyKey": row.idempotency_key,
        "idempotencyKeyExpiresAt": (
            serialize.iso(to_datetime(row.idempotency_key_expires_at))
            if row.idempotency_key_expires_at
            else None
        ),
        "timeoutAt": (serialize.iso(to_datetime(row.due_at)) if row.due_at else None),
        "completedAt": serialize.iso(row.completed_at) if row.completed_at else None,
        "tags": list(row.tags or []),
        "createdAt": serialize.iso(row.created_at),
    }
    if with_output and row.status != "PENDING":
        item["output"] = json.dumps(row.output)
        item["outputType"] = "application/json"
        item["outputIsError"] = bool(row.output_is_error)
    # absent optional fields are left out: the SDK's schemas refuse null (WIRE §2)
    return {k: v for k, v in item.items() if v is not None}


class CreateTokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    idempotencyKey: Key | None = None
    idempotencyKeyTTL: Duration | None = None
    #: a duration ("1h", or seconds, 0 to 100 years) or an ISO date
    timeout: Seconds | Annotated[str, Field(max_length=64)] | None = None
    tags: Name | list[Name] | None = None
    #: ours: a JSON Schema the completion's data must satisfy (422 otherwise)
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")

    @field_validator("tags")
    @classmethod
    def _as_list(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [value] if isinstance(value, str) else value


@router.post("/api/v1/waitpoints/tokens")
async def create_token(
    body: CreateTokenBody, request: Request, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    """Create a token; a repeated ``idempotencyKey`` returns the same one (``isCached``)."""
    req = token_request(
        timeout=body.timeout,
        tags=list(body.tags or []),
        idempotency_key=body.idempotencyKey,
        idempotency_key_ttl=body.idempotencyKeyTTL,
        now=engine.res.clock.now(),
        schema=body.schema_,
    )
    row, cached = await engine.waitpoints.create_token(env.id, req)
    return {"id": row.id, "isCached": cached, "url": token_url(base_url(engine, request), row)}


@router.get("/api/v1/waitpoints/tokens")
async def list_tokens(
    request: Request,
    engine: EngineDep,
    env: EnvDep,
    page_size: Annotated[int, Query(alias="page[size]", ge=1, le=100)] = 25,
    page_after: Annotated[str | None, Query(alias="page[after]")] = None,
) -> dict[str, Any]:
    q = request.query_params
    statuses = [s for s in (q.get("filter[status]") or "").split(",") if s]
    wanted = []
    for status in statuses:
        if status not in ("WAITING", "COMPLETED", "TIMED_OUT"):
            raise UserError(f"filter[status]: unknown token status {status!r}")
        wanted.append("PENDING" if status == "WAITING" else status)
    rows, more = await engine.waitpoints.list_tokens(
        env.id,
        statuses=wanted,
        idempotency_key=q.get("filter[idempotencyKey]"),
        tags=[t for t in (q.get("filter[tags]") or "").split(",") if t],
        size=page_size,
        after=page_after,
    )
    base = base_url(engine, request)
    return {
        "data": [token_item(r, base) for r in rows],
        "pagination": {"next": rows[-1].id} if more and rows else {},
    }


@router.get("/api/v1/waitpoints/tokens/{token_id}")
async def retrieve_token(
    token_id: str, request: Request, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    row = await engine.waitpoints.get_token(env.id, token_id)
    return token_item(row, base_url(engine, request), with_output=True)


class CompleteTokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: Any = None


@router.post("/api/v1/waitpoints/tokens/{token_id}/complete")
async def complete_token(
    token_id: str, body: CompleteTokenBody, engine: EngineDep, env: EnvDep
) -> dict[str, bool]:
    """Complete a token; completing it again is accepted and keeps the first data."""
    await engine.waitpoints.complete_token(env.id, token_id, body.data)
    return {"success": True}


@router.post("/api/v1/waitpoints/tokens/{token_id}/callback/{secret}")
async def token_callback(
    token_id: str, secret: str, request: Request, engine: EngineDep
) -> dict[str, bool]:
    """Complete a token from an outside system: the JSON body becomes its output."""
    raw = await request.body()
    try:
        data = loads(raw) if raw.strip() else None
    except ValueError:
        raise UserError("body: not valid JSON") from None
    await engine.waitpoints.complete_token("", token_id, data, secret=secret, root="body")
    return {"success": True}
