"""Queries on webhook endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import WebhookDeliveryRecord, WebhookEndpointRecord
from triggerfish.store.tables import webhook_deliveries, webhook_endpoints
from triggerfish.store.values import column_values


async def insert_endpoint(conn: AsyncConnection, endpoint: WebhookEndpointRecord) -> None:
    await conn.execute(webhook_endpoints.insert().values(column_values(endpoint)))


async def get_endpoint(
    conn: AsyncConnection, endpoint_id: str, env_id: str | None = None
) -> WebhookEndpointRecord | None:
    """An endpoint by id; within ``env_id`` when given (the public route has none)."""
    stmt = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    if env_id is not None:
        stmt = stmt.where(webhook_endpoints.c.environment_id == env_id)
    row = (await conn.execute(stmt)).first()
    return WebhookEndpointRecord(*row) if row is not None else None


async def list_endpoints(conn: AsyncConnection, env_id: str) -> list[WebhookEndpointRecord]:
    stmt = (
        select(webhook_endpoints)
        .where(webhook_endpoints.c.environment_id == env_id)
        .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
    )
    return [WebhookEndpointRecord(*row) for row in (await conn.execute(stmt)).all()]


async def delete_endpoint(conn: AsyncConnection, env_id: str, endpoint_id: str) -> bool:
    stmt = delete(webhook_endpoints).where(
        webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.environment_id == env_id
    )
    return bool((await conn.execute(stmt)).rowcount)


async def count_rejection(conn: AsyncConnection, endpoint_id: str, at: datetime) -> None:
    """One more delivery refused for its signature (an increment in the database)."""
    stmt = (
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(rejected_count=webhook_endpoints.c.rejected_count + 1, last_rejected_at=at)
    )
    await conn.execute(stmt)


async def insert_delivery(conn: AsyncConnection, delivery: WebhookDeliveryRecord) -> None:
    await conn.execute(webhook_deliveries.insert().values(column_values(delivery)))


async def list_deliveries(
    conn: AsyncConnection, env_id: str, endpoint_id: str, limit: int
) -> list[WebhookDeliveryRecord]:
    """An endpoint's deliveries, newest first."""
    stmt = (
        select(webhook_deliveries)
        .where(
            webhook_deliveries.c.endpoint_id == endpoint_id,
            webhook_deliveries.c.environment_id == env_id,
        )
        .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id.desc())
        .limit(limit)
    )
    return [WebhookDeliveryRecord(*row) for row in (await conn.execute(stmt)).all()]
