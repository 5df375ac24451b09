"""Workers, the task versions they registered, and queues."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import TaskVersionRecord, WorkerRecord
from triggerfish._ids import new_id
from triggerfish.store.tables import queues, task_versions, workers
from triggerfish.store.values import column_values


async def insert_worker(conn: AsyncConnection, worker: WorkerRecord) -> None:
    await conn.execute(insert(workers).values(column_values(worker)))


async def touch_worker(conn: AsyncConnection, worker_id: str, now: float) -> None:
    await conn.execute(update(workers).where(workers.c.id == worker_id).values(last_seen_at=now))


async def stop_worker(conn: AsyncConnection, worker_id: str, now: datetime) -> None:
    await conn.execute(update(workers).where(workers.c.id == worker_id).values(stopped_at=now))


async def get_worker(conn: AsyncConnection, worker_id: str) -> WorkerRecord | None:
    row = (await conn.execute(select(workers).where(workers.c.id == worker_id))).first()
    return None if row is None else WorkerRecord(*row)


async def online_workers(
    conn: AsyncConnection, env_id: str, seen_after: float
) -> list[WorkerRecord]:
    stmt = select(workers).where(
        workers.c.environment_id == env_id,
        workers.c.stopped_at.is_(None),
        workers.c.last_seen_at >= seen_after,
    )
    return [WorkerRecord(*r) for r in (await conn.execute(stmt)).all()]


async def upsert_task_versions(
    conn: AsyncConnection,
    env_id: str,
    version: str,
    manifests: Sequence[dict[str, Any]],
    now: datetime,
) -> None:
    existing = {
        r.task_identifier
        for r in await conn.execute(
            select(task_versions.c.task_identifier).where(
                task_versions.c.environment_id == env_id, task_versions.c.version == version
            )
        )
    }
    fresh = [m for m in manifests if m["id"] not in existing]
    if fresh:
        await conn.execute(
            insert(task_versions),
            [
                {
                    "environment_id": env_id,
                    "task_identifier": m["id"],
                    "version": version,
                    "manifest": m,
                    "registered_at": now,
                }
                for m in fresh
            ],
        )


async def latest_manifest(
    conn: AsyncConnection, env_id: str, task_id: str
) -> dict[str, Any] | None:
    stmt = (
        select(task_versions.c.manifest)
        .where(task_versions.c.environment_id == env_id, task_versions.c.task_identifier == task_id)
        .order_by(task_versions.c.registered_at.desc())
        .limit(1)
    )
    value = (await conn.execute(stmt)).scalar()
    return dict(value) if value is not None else None


async def manifest_for(
    conn: AsyncConnection, env_id: str, task_id: str, version: str
) -> dict[str, Any] | None:
    stmt = select(task_versions.c.manifest).where(
        task_versions.c.environment_id == env_id,
        task_versions.c.task_identifier == task_id,
        task_versions.c.version == version,
    )
    value = (await conn.execute(stmt)).scalar()
    return dict(value) if value is not None else None


async def known_task_ids(conn: AsyncConnection, env_id: str) -> list[str]:
    stmt = (
        select(task_versions.c.task_identifier)
        .where(task_versions.c.environment_id == env_id)
        .distinct()
    )
    return [r[0] for r in await conn.execute(stmt)]


def _declared(q: dict[str, Any]) -> dict[str, Any]:
    rate = q.get("rate_limit") or (None, None)
    return {
        "concurrency_limit": q.get("concurrency_limit"),
        "concurrency_key_limit": q.get("concurrency_key_limit"),
        "rate_limit_count": rate[0],
        "rate_limit_period": rate[1],
    }


async def ensure_queues(
    conn: AsyncConnection,
    env_id: str,
    declared: Sequence[dict[str, Any]],
    now: datetime,
    *,
    update_limits: bool,
) -> None:
    """Create missing queues; with ``update_limits`` the declared limits replace the
    stored ones (a run-time override and the paused flag are left alone)."""
    by_name = {q["name"]: q for q in declared}
    if not by_name:
        return
    rows = await conn.execute(
        select(
            queues.c.name,
            queues.c.concurrency_limit,
            queues.c.concurrency_key_limit,
            queues.c.rate_limit_count,
            queues.c.rate_limit_period,
        ).where(queues.c.environment_id == env_id, queues.c.name.in_(list(by_name)))
    )
    stored = {
        r.name: {
            "concurrency_limit": r.concurrency_limit,
            "concurrency_key_limit": r.concurrency_key_limit,
            "rate_limit_count": r.rate_limit_count,
            "rate_limit_period": r.rate_limit_period,
        }
        for r in rows
    }
    for name, q in sorted(by_name.items()):
        wanted = _declared(q)
        if name not in stored:
            # a concurrent trigger may create the same queue: first one wins
            ins: Any = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(queues)
            await conn.execute(
                ins.values(
                    id=new_id("queue"),
                    environment_id=env_id,
                    name=name,
                    paused=False,
                    created_at=now,
                    **wanted,
                ).on_conflict_do_nothing(index_elements=["environment_id", "name"])
            )
        elif update_limits and stored[name] != wanted:
            await conn.execute(
                update(queues)
                .where(queues.c.environment_id == env_id, queues.c.name == name)
                .values(**wanted)
            )


async def task_versions_of(conn: AsyncConnection, env_id: str) -> list[TaskVersionRecord]:
    """Every (task, version, manifest, registered at) of an environment, newest first."""
    stmt = (
        select(
            task_versions.c.task_identifier,
            task_versions.c.version,
            task_versions.c.manifest,
            task_versions.c.registered_at,
        )
        .where(task_versions.c.environment_id == env_id)
        .order_by(task_versions.c.registered_at.desc())
    )
    return [TaskVersionRecord(*r) for r in (await conn.execute(stmt)).all()]
