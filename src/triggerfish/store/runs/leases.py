"""Runs that hold or could take a worker slot: claim candidates, active counts, leases."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    bindparam,
    func,
    not_,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import ClaimCandidate, ExpiredLease, positional
from triggerfish._domain.states import RunStatus
from triggerfish.store.tables import runs

_candidate = positional(ClaimCandidate)

# -- claiming -------------------------------------------------------------------


async def queued_candidates(
    conn: AsyncConnection,
    *,
    env_id: str,
    task_ids: Sequence[str],
    version: str,
    now: float,
    limit: int,
    skip_locked: bool,
    exclude_queues: Sequence[str] = (),
    exclude_keys: Sequence[tuple[str, str]] = (),
    only_queues: Sequence[str] | None = None,
) -> list[ClaimCandidate]:
    """Queued runs this worker could take, lowest ``order_key`` first.

    Walks the partial index ``ix_runs_queued``, stepping over queues and
    concurrency keys that cannot take a run now (paused, at a limit, rate
    limited), so a blocked backlog never hides the runs behind it. On
    PostgreSQL the rows are locked with ``SKIP LOCKED`` so concurrent claimers
    take disjoint sets.
    """
    shape = (skip_locked, only_queues is not None, bool(exclude_queues), bool(exclude_keys))
    params = {
        "env": env_id,
        "now": now,
        "tasks": list(task_ids),
        "version": version,
        "limit": limit,
        "only": sorted(only_queues or ()),
        "exq": sorted(exclude_queues),
        "exkeys": sorted(exclude_keys),
    }
    return [_candidate(r) for r in (await conn.execute(_candidates(*shape), params)).all()]


@functools.lru_cache(maxsize=16)
def _candidates(skip_locked: bool, only: bool, exclude_queues: bool, exclude_keys: bool) -> Any:
    """The candidates query of one shape, built once (a claim runs it every time)."""
    stmt = (
        select(runs.c.id, runs.c.queue_name, runs.c.concurrency_key, runs.c.order_key)
        .where(
            runs.c.environment_id == bindparam("env"),
            runs.c.status == RunStatus.QUEUED.value,
            runs.c.available_at <= bindparam("now"),
            runs.c.task_identifier.in_(bindparam("tasks", expanding=True)),
            (runs.c.locked_version.is_(None)) | (runs.c.locked_version == bindparam("version")),
        )
        .order_by(runs.c.order_key)
        .limit(bindparam("limit", type_=Integer()))
    )
    if only:
        stmt = stmt.where(runs.c.queue_name.in_(bindparam("only", expanding=True)))
    if exclude_queues:
        stmt = stmt.where(runs.c.queue_name.not_in(bindparam("exq", expanding=True)))
    if exclude_keys:
        stmt = stmt.where(
            runs.c.concurrency_key.is_(None)
            | not_(
                tuple_(runs.c.queue_name, runs.c.concurrency_key).in_(
                    bindparam("exkeys", expanding=True)
                )
            )
        )
    if skip_locked:
        stmt = stmt.with_for_update(skip_locked=True, of=runs)
    return stmt


def status_in(*statuses: RunStatus) -> ColumnElement[bool]:
    """``runs.status IN (...)`` with the statuses written into the SQL as literals.

    The partial indexes on runs (``ix_runs_active``, ``ix_runs_lease``,
    ``ix_runs_active_order``, ``ix_runs_expiry``) are only usable when the
    query's own terms imply the index's ``WHERE status IN (...)``. SQLite cannot
    see through bound parameters in an IN list, so ``status IN (?, ?)`` scans
    the whole table, finished runs included; PostgreSQL's generic plans of
    prepared statements cannot either.
    """
    values = [s.value for s in statuses]
    return runs.c.status.in_(
        bindparam("statuses", values, expanding=True, literal_execute=True, unique=True)
    )


#: runs holding a worker slot; the predicate of the partial indexes on them
ACTIVE = (RunStatus.DEQUEUED, RunStatus.EXECUTING)


async def active_counts(
    conn: AsyncConnection, env_id: str, queue_names: Iterable[str]
) -> dict[tuple[str, str | None], int]:
    """How many runs of each (queue, concurrency key) hold a worker slot (``ix_runs_active``)."""
    names = sorted(set(queue_names))
    if not names:
        return {}
    stmt = (
        select(runs.c.queue_name, runs.c.concurrency_key, func.count())
        .where(
            runs.c.environment_id == env_id,
            runs.c.queue_name.in_(names),
            status_in(*ACTIVE),
        )
        .group_by(runs.c.queue_name, runs.c.concurrency_key)
    )
    return {(q, k): int(n) for q, k, n in (await conn.execute(stmt)).all()}


async def active_total(conn: AsyncConnection, env_id: str) -> int:
    """Runs of the environment holding a worker slot."""
    stmt = (
        select(func.count())
        .select_from(runs)
        .where(runs.c.environment_id == env_id, status_in(*ACTIVE))
    )
    return int((await conn.execute(stmt)).scalar_one())


# -- leases -----------------------------------------------------------------------


async def extend_leases(
    conn: AsyncConnection, worker_id: str, attempt_ids: Sequence[str], until: float
) -> set[str]:
    """Renew the leases of these attempts; returns the ones still current."""
    if not attempt_ids:
        return set()
    stmt = (
        update(runs)
        .where(
            runs.c.current_attempt_id.in_(list(attempt_ids)),
            runs.c.worker_id == worker_id,
            status_in(*ACTIVE),
        )
        .values(lease_expires_at=until)
        .returning(runs.c.current_attempt_id)
    )
    return {r[0] for r in (await conn.execute(stmt)).all()}


async def held_by_worker(conn: AsyncConnection, worker_id: str) -> list[str]:
    """Current attempts of the runs a worker holds (claimed or started)."""
    stmt = select(runs.c.current_attempt_id).where(
        runs.c.worker_id == worker_id, status_in(*ACTIVE)
    )
    return [r[0] for r in (await conn.execute(stmt)).all()]


async def expired_leases(conn: AsyncConnection, now: float, limit: int) -> list[ExpiredLease]:
    stmt = (
        select(runs.c.id, runs.c.current_attempt_id, runs.c.status)
        .where(status_in(*ACTIVE), runs.c.lease_expires_at < now)
        .limit(limit)
    )
    return [ExpiredLease(*r) for r in (await conn.execute(stmt)).all()]


async def next_available_at(conn: AsyncConnection, env_id: str) -> float | None:
    stmt = select(func.min(runs.c.available_at)).where(
        runs.c.environment_id == env_id, runs.c.status == RunStatus.QUEUED.value
    )
    value = (await conn.execute(stmt)).scalar()
    return float(value) if value is not None else None
