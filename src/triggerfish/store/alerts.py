"""Queries of alert rules and their deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import (
    AlertDeliveryRecord,
    AlertRuleRecord,
    DueAlert,
    WorkerRecord,
)
from triggerfish.store.tables import alert_deliveries, alert_rules, runs, workers
from triggerfish.store.values import column_values

_FAILED = frozenset({"FAILED", "CRASHED", "TIMED_OUT", "SYSTEM_FAILURE"})


async def insert_rule(conn: AsyncConnection, rule: AlertRuleRecord) -> None:
    await conn.execute(alert_rules.insert().values(column_values(rule)))


async def rules(conn: AsyncConnection, env_id: str | None = None) -> list[AlertRuleRecord]:
    """The rules of ``env_id``, or of every environment."""
    stmt = select(alert_rules).order_by(alert_rules.c.id)
    if env_id is not None:
        stmt = stmt.where(alert_rules.c.environment_id == env_id)
    return [AlertRuleRecord(*r) for r in (await conn.execute(stmt)).all()]


async def rule(conn: AsyncConnection, env_id: str, rule_id: str) -> AlertRuleRecord | None:
    stmt = select(alert_rules).where(
        alert_rules.c.id == rule_id, alert_rules.c.environment_id == env_id
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else AlertRuleRecord(*row)


async def delete_rule(conn: AsyncConnection, env_id: str, rule_id: str) -> bool:
    stmt = delete(alert_rules).where(
        alert_rules.c.id == rule_id, alert_rules.c.environment_id == env_id
    )
    return bool((await conn.execute(stmt)).rowcount)


async def raise_alert(conn: AsyncConnection, delivery: AlertDeliveryRecord) -> bool:
    """Queue ``delivery``, or add to the count of the one of its window (its
    ``dedup_key``), which takes its payload if not sent yet; True: new."""
    existing = (
        await conn.execute(
            select(alert_deliveries.c.id, alert_deliveries.c.status).where(
                alert_deliveries.c.dedup_key == delivery.dedup_key
            )
        )
    ).first()
    if existing is None:
        try:
            async with conn.begin_nested():
                await conn.execute(alert_deliveries.insert().values(column_values(delivery)))
            return True
        except IntegrityError:  # another server raised it first: count this one in
            pass
    payload = delivery.payload
    stmt = update(alert_deliveries).where(alert_deliveries.c.dedup_key == delivery.dedup_key)
    # a delivery not sent yet carries the latest occurrence and the new count
    pending = alert_deliveries.c.status == "PENDING"
    await conn.execute(
        stmt.where(pending).values(count=alert_deliveries.c.count + 1, payload=payload)
    )
    await conn.execute(stmt.where(~pending).values(count=alert_deliveries.c.count + 1))
    return False


async def due_deliveries(conn: AsyncConnection, now: float, limit: int) -> list[DueAlert]:
    """Pending deliveries whose next attempt has come, each with its rule, earliest first."""
    stmt = (
        select(alert_deliveries, alert_rules)
        .join(alert_rules, alert_rules.c.id == alert_deliveries.c.rule_id)
        .where(alert_deliveries.c.status == "PENDING", alert_deliveries.c.next_attempt_at <= now)
        .order_by(alert_deliveries.c.next_attempt_at)
        .limit(limit)
    )
    return [_due_alert(r) for r in (await conn.execute(stmt)).all()]


_DELIVERY_COLUMNS = len(alert_deliveries.c)


def _due_alert(row: Sequence[Any]) -> DueAlert:
    # the delivery's columns come first, then the rule's, each in its table's order
    return DueAlert(
        AlertDeliveryRecord(*row[:_DELIVERY_COLUMNS]), AlertRuleRecord(*row[_DELIVERY_COLUMNS:])
    )


async def delivery_done(
    conn: AsyncConnection,
    delivery_id: str,
    *,
    status: str,
    attempts: int,
    next_attempt_at: float | None,
    error: str | None,
    sent_at: datetime | None,
) -> None:
    await conn.execute(
        update(alert_deliveries)
        .where(alert_deliveries.c.id == delivery_id)
        .values(
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_error=error,
            sent_at=sent_at,
        )
    )


async def deliveries(conn: AsyncConnection, env_id: str, limit: int) -> list[AlertDeliveryRecord]:
    """The environment's latest deliveries, newest first."""
    stmt = (
        select(alert_deliveries)
        .where(alert_deliveries.c.environment_id == env_id)
        .order_by(alert_deliveries.c.id.desc())
        .limit(limit)
    )
    return [AlertDeliveryRecord(*r) for r in (await conn.execute(stmt)).all()]


async def finished_counts(
    conn: AsyncConnection, env_id: str, since: datetime, tasks: list[str]
) -> tuple[int, int]:
    """(finished, failed) runs of ``tasks`` (all when empty) finished since ``since``."""
    stmt = select(runs.c.status, func.count()).where(
        runs.c.environment_id == env_id,
        runs.c.finished_at >= since,
    )
    if tasks:
        stmt = stmt.where(runs.c.task_identifier.in_(tasks))
    rows = (await conn.execute(stmt.group_by(runs.c.status))).all()
    total = sum(int(n) for _, n in rows)
    failed = sum(
        int(n) for s, n in rows if s in ("FAILED", "CRASHED", "TIMED_OUT", "SYSTEM_FAILURE")
    )
    return total, failed


async def oldest_queued(conn: AsyncConnection, env_id: str, queue: str | None) -> datetime | None:
    stmt = select(func.min(runs.c.created_at)).where(
        runs.c.environment_id == env_id, runs.c.status == "QUEUED"
    )
    if queue:
        stmt = stmt.where(runs.c.queue_name == queue)
    value = (await conn.execute(stmt)).scalar()
    return value if isinstance(value, datetime) else None


async def live_workers(conn: AsyncConnection, env_id: str, seen_after: float) -> list[WorkerRecord]:
    stmt = select(workers).where(workers.c.environment_id == env_id, workers.c.stopped_at.is_(None))
    found = [WorkerRecord(*r) for r in (await conn.execute(stmt)).all()]
    return [w for w in found if w.last_seen_at >= seen_after]


async def lost_workers(
    conn: AsyncConnection, env_id: str, seen_before: float
) -> list[WorkerRecord]:
    """Workers not stopped that have not been heard from since ``seen_before``."""
    stmt = select(workers).where(
        workers.c.environment_id == env_id,
        workers.c.stopped_at.is_(None),
        workers.c.last_seen_at < seen_before,
    )
    return [WorkerRecord(*r) for r in (await conn.execute(stmt)).all()]
