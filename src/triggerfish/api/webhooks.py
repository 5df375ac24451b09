"""Incoming webhooks: the public ``POST /webhooks/{id}`` and the endpoints' management API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from triggerfish._domain.records import WebhookDeliveryRecord, WebhookEndpointRecord
from triggerfish.api import serialize
from triggerfish.api.deps import EngineDep, EnvDep, engine_of
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.errors import PayloadTooLarge

router = APIRouter(route_class=StrictJsonRoute)


def public_url(request: Request, endpoint_id: str) -> str:
    """Where the source sends deliveries: the configured public URL, else this request's."""
    base = engine_of(request).res.settings.public_url or str(request.base_url)
    return f"{base.rstrip('/')}/webhooks/{endpoint_id}"


def endpoint_object(row: WebhookEndpointRecord, url: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "url": url,
        "source": row.source,
        "eventName": row.event_name,
        "options": row.options,
        "description": row.description,
        "rejectedCount": row.rejected_count,
        "lastRejectedAt": serialize.iso(row.last_rejected_at),
        "createdAt": serialize.iso(row.created_at),
    }


def delivery_object(row: WebhookDeliveryRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpointId": row.endpoint_id,
        "eventId": row.event_id,
        "eventName": row.event_name,
        "outcome": row.outcome,
        "headers": row.headers,
        "payload": row.payload,
        "runs": row.run_ids,
        "errors": row.errors,
        "createdAt": serialize.iso(row.created_at),
    }


@router.post("/webhooks/{endpoint_id}", tags=["webhooks"])
async def receive_webhook(endpoint_id: str, request: Request) -> dict[str, Any]:
    """A source's delivery. No API key: the signature is the credential (401 when wrong).

    Answers ``{"delivery", "event": {"id", "name"}, "runs", "redelivery"}``.
    """
    engine = engine_of(request)
    body = await request.body()
    limit = engine.res.settings.max_body_bytes
    if len(body) > limit:  # a body sent without Content-Length passes the middleware
        raise PayloadTooLarge(len(body), limit)
    headers = dict(request.headers.items())
    received = await engine.webhooks.receive(endpoint_id, headers, body)
    row = received.delivery
    if row is None:  # a handshake: the source wants its challenge back
        return received.reply or {}
    return {
        "delivery": row.id,
        "event": {"id": row.event_id, "name": row.event_name},
        "runs": row.run_ids,
        "redelivery": received.is_redelivery,
    }


class CreateEndpointBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    source: str = Field(min_length=1, max_length=64)
    secret: str | None = Field(default=None, min_length=1, max_length=1024)
    eventName: str | None = Field(default=None, min_length=1, max_length=256)
    options: dict[str, Any] = Field(default_factory=dict)
    description: str | None = Field(default=None, max_length=500)


@router.post("/api/v1/webhooks", tags=["webhooks"])
async def create_endpoint(
    body: CreateEndpointBody, engine: EngineDep, env: EnvDep, request: Request
) -> dict[str, Any]:
    """A webhook endpoint. The answer holds its URL and, this once, its signing secret."""
    created = await engine.webhooks.create(
        env.id,
        body.source,
        secret=body.secret,
        event_name=body.eventName,
        options=body.options,
        description=body.description,
    )
    row = created.endpoint
    return {**endpoint_object(row, public_url(request, row.id)), "secret": created.secret}


@router.get("/api/v1/webhooks", tags=["webhooks"])
async def list_endpoints(engine: EngineDep, env: EnvDep, request: Request) -> dict[str, Any]:
    rows = await engine.webhooks.endpoints(env.id)
    return {"data": [endpoint_object(r, public_url(request, r.id)) for r in rows]}


@router.get("/api/v1/webhooks/{endpoint_id}", tags=["webhooks"])
async def retrieve_endpoint(
    endpoint_id: str, engine: EngineDep, env: EnvDep, request: Request
) -> dict[str, Any]:
    row = await engine.webhooks.get(env.id, endpoint_id)
    return endpoint_object(row, public_url(request, row.id))


@router.delete("/api/v1/webhooks/{endpoint_id}", tags=["webhooks"])
async def delete_endpoint(endpoint_id: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    await engine.webhooks.delete(env.id, endpoint_id)
    return {"id": endpoint_id, "deleted": True}


@router.get("/api/v1/webhooks/{endpoint_id}/deliveries", tags=["webhooks"])
async def list_deliveries(
    endpoint_id: str,
    engine: EngineDep,
    env: EnvDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """An endpoint's verified deliveries, newest first."""
    rows = await engine.webhooks.deliveries(env.id, endpoint_id, limit)
    return {"data": [delivery_object(r) for r in rows]}
