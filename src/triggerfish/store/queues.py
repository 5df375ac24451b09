"""Queues at run time: limits, overrides, pause, rate-limit windows, fair buckets."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Integer,
    Row,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import QueueRecord
from triggerfish._domain.states import RunStatus
from triggerfish.store import runs as run_store
from triggerfish.store.tables import environments, fair_buckets, queue_claims, queues, runs


@dataclass(frozen=True)
class QueueRules:
    """What constrains claims from one queue."""

    name: str
    #: effective limit: the run-time override, else the declared one
    limit: int | None
    key_limit: int | None
    rate_count: int | None
    rate_period: float | None
    paused: bool

    @property
    def rate_limited(self) -> bool:
        return bool(self.rate_count and self.rate_period)


def _rules(row: Row[Any]) -> QueueRules:
    override = row.concurrency_limit_override
    return QueueRules(
        name=row.name,
        limit=override if override is not None else row.concurrency_limit,
        key_limit=row.concurrency_key_limit,
        rate_count=row.rate_limit_count,
        rate_period=row.rate_limit_period,
        paused=bool(row.paused),
    )


_CONSTRAINED = (
    queues.c.concurrency_limit.is_not(None)
    | queues.c.concurrency_limit_override.is_not(None)
    | queues.c.concurrency_key_limit.is_not(None)
    | queues.c.rate_limit_count.is_not(None)
    | queues.c.paused
)


async def constraints(
    conn: AsyncConnection, env_id: str, names: Sequence[str] | None = None, *, lock: bool = False
) -> dict[str, QueueRules]:
    """Rules of the environment's queues that constrain claims (all, or of ``names``).

    With ``lock`` (PostgreSQL) the rows stay locked until the claim commits, so
    servers serialise per constrained queue and cannot both fill its last slot.
    """
    if names is None and not lock:  # every claim asks this: built once
        return {r.name: _rules(r) for r in await conn.execute(_ALL_CONSTRAINED, {"env": env_id})}
    stmt = select(queues).where(queues.c.environment_id == env_id, _CONSTRAINED)
    if names is not None:
        if not names:
            return {}
        stmt = stmt.where(queues.c.name.in_(sorted(names))).order_by(queues.c.name)
    if lock:
        stmt = stmt.with_for_update()
    return {r.name: _rules(r) for r in await conn.execute(stmt)}


_ALL_CONSTRAINED = select(queues).where(queues.c.environment_id == bindparam("env"), _CONSTRAINED)


async def environment_limit(
    conn: AsyncConnection, env_id: str, *, lock: bool = False
) -> int | None:
    stmt = _ENV_LIMIT_LOCKED if lock else _ENV_LIMIT
    value = (await conn.execute(stmt, {"env": env_id})).scalar()
    return int(value) if value is not None else None


_ENV_LIMIT = select(environments.c.concurrency_limit).where(environments.c.id == bindparam("env"))
_ENV_LIMIT_LOCKED = _ENV_LIMIT.with_for_update()


async def set_environment_limit(conn: AsyncConnection, env_id: str, limit: int | None) -> None:
    """A limit set at run time: it wins over the configured default until reset."""
    await conn.execute(
        update(environments)
        .where(environments.c.id == env_id)
        .values(concurrency_limit=limit, concurrency_limit_overridden=True)
    )


async def reset_environment_limit(conn: AsyncConnection, env_id: str) -> None:
    """Back to the configured default (none: no limit)."""
    await conn.execute(
        update(environments)
        .where(environments.c.id == env_id)
        .values(
            concurrency_limit=environments.c.concurrency_limit_default,
            concurrency_limit_overridden=False,
        )
    )


async def declare_environment_limit(
    conn: AsyncConnection, env_id: str, default: int | None
) -> None:
    """The project configuration's default; it applies unless a run-time limit is set."""
    value = bindparam("default", default, type_=Integer)
    await conn.execute(
        update(environments)
        .where(environments.c.id == env_id)
        .values(
            concurrency_limit_default=value,
            concurrency_limit=case(
                (environments.c.concurrency_limit_overridden, environments.c.concurrency_limit),
                else_=value,
            ),
        )
    )


async def recent_claims(
    conn: AsyncConnection, env_id: str, names: Sequence[str], since: dict[str, float]
) -> dict[str, tuple[int, float]]:
    """``name -> (claims after since[name], oldest such claim)`` (``ix_queue_claims_window``)."""
    out: dict[str, tuple[int, float]] = {}
    if not names:
        return out
    conds = [
        (queue_claims.c.queue_name == n) & (queue_claims.c.at > since[n]) for n in sorted(names)
    ]
    stmt = (
        select(queue_claims.c.queue_name, func.count(), func.min(queue_claims.c.at))
        .where(queue_claims.c.environment_id == env_id, or_(*conds))
        .group_by(queue_claims.c.queue_name)
    )
    for name, count, oldest in await conn.execute(stmt):
        out[name] = (int(count), float(oldest))
    return out


async def record_claims(
    conn: AsyncConnection, env_id: str, queue_names: Sequence[str], at: float
) -> None:
    """One claim of each of ``queue_names`` (a name twice: two claims) at ``at``, counted
    against their rate limits."""
    if queue_names:
        rows = [{"environment_id": env_id, "queue_name": q, "at": at} for q in queue_names]
        await conn.execute(insert(queue_claims), rows)


async def forget_claims_before(conn: AsyncConnection, before: float) -> int:
    """Drop claim records older than every window (``before`` = now - longest period)."""
    result = await conn.execute(delete(queue_claims).where(queue_claims.c.at < before))
    return int(result.rowcount or 0)


async def longest_rate_period(conn: AsyncConnection) -> float | None:
    value = (await conn.execute(select(func.max(queues.c.rate_limit_period)))).scalar()
    return float(value) if value is not None else None


# -- administration -------------------------------------------------------------------


async def list_queues(
    conn: AsyncConnection, env_id: str, *, offset: int, limit: int
) -> tuple[list[QueueRecord], int]:
    total = (
        await conn.execute(
            select(func.count()).select_from(queues).where(queues.c.environment_id == env_id)
        )
    ).scalar_one()
    stmt = (
        select(queues)
        .where(queues.c.environment_id == env_id)
        .order_by(queues.c.name)
        .offset(offset)
        .limit(limit)
    )
    return [QueueRecord(*r) for r in (await conn.execute(stmt)).all()], int(total)


async def find_queue(
    conn: AsyncConnection, env_id: str, *, queue_id: str | None = None, name: str | None = None
) -> QueueRecord | None:
    stmt = select(queues).where(queues.c.environment_id == env_id)
    stmt = stmt.where(queues.c.id == queue_id) if queue_id else stmt.where(queues.c.name == name)
    row = (await conn.execute(stmt)).first()
    return None if row is None else QueueRecord(*row)


async def update_queue(conn: AsyncConnection, queue_id: str, **values: Any) -> QueueRecord:
    stmt = update(queues).where(queues.c.id == queue_id).values(**values).returning(*queues.c)
    return QueueRecord(*(await conn.execute(stmt)).one())


async def queue_counts(
    conn: AsyncConnection, env_id: str, names: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """``name -> (running, queued)`` for the given queues."""
    if not names:
        return {}
    out = {n: (0, 0) for n in names}
    active = [RunStatus.DEQUEUED.value, RunStatus.EXECUTING.value]
    waiting = [RunStatus.QUEUED.value, RunStatus.DELAYED.value, RunStatus.PENDING_VERSION.value]
    stmt = (
        select(runs.c.queue_name, runs.c.status, func.count())
        .where(
            runs.c.environment_id == env_id,
            runs.c.queue_name.in_(list(names)),
            runs.c.status.in_(active + waiting),
        )
        .group_by(runs.c.queue_name, runs.c.status)
    )
    for name, status, count in await conn.execute(stmt):
        running, queued = out[name]
        if status in active:
            running += int(count)
        else:
            queued += int(count)
        out[name] = (running, queued)
    return out


# -- fair queuing ----------------------------------------------------------------------


async def take_tags(
    conn: AsyncConnection,
    env_id: str,
    queue_name: str,
    concurrency_key: str | None,
    now: float,
    count: int,
    quantum: float,
) -> float:
    """Reserve ``count`` consecutive fair tags in a bucket; returns the first.

    One upsert: the bucket's next tag becomes ``max(next, clock) + count *
    quantum``, where the service clock is the newest order key holding a slot,
    else the oldest one waiting (``ix_runs_active_order`` / ``ix_runs_queued``,
    one probe each), else ``now``. Concurrent triggers of one bucket serialise
    on its row.
    """
    step = count * quantum
    params = {
        "env": env_id,
        "queue": queue_name,
        "key": concurrency_key or "",
        "now": now,
        "step": step,
    }
    after = float((await conn.execute(_take_tags(conn.dialect.name), params)).scalar_one())
    return after - step


@functools.cache
def service_clock_sql() -> str:
    """The service clock, as an SQL expression on :env and :now."""
    # built on first use: store.runs may still be loading when this module is
    active = ", ".join(f"'{s.value}'" for s in run_store.ACTIVE)
    return (
        "coalesce("
        f"(SELECT max(order_key) FROM runs WHERE environment_id = :env AND status IN ({active})), "
        "(SELECT min(order_key) FROM runs "
        f"WHERE environment_id = :env AND status = '{RunStatus.QUEUED.value}'), "
        ":now)"
    )


def take_tags_sql(dialect: str) -> str:
    """The upsert of ``take_tags`` with named parameters :env, :queue, :key, :now, :step."""
    # the clock is written out twice rather than in a CTE, which SQLite's upsert
    # cannot see; the second probe runs only when the bucket exists
    greatest = "greatest" if dialect == "postgresql" else "max"
    clock = service_clock_sql()
    return (
        "INSERT INTO fair_buckets (environment_id, queue_name, concurrency_key, next_tag) "
        # the cast: PostgreSQL would otherwise deduce two types for :env
        f"VALUES (CAST(:env AS VARCHAR), :queue, :key, {clock} + :step) "
        "ON CONFLICT (environment_id, queue_name, concurrency_key) "
        f"DO UPDATE SET next_tag = {greatest}(fair_buckets.next_tag, {clock}) + :step "
        "RETURNING next_tag"
    )


@functools.lru_cache(maxsize=2)
def _take_tags(dialect: str) -> Any:
    # typed text: SQLAlchemy recompiles its ON CONFLICT constructs on every
    # execution (they have no cache key), and a trigger runs this each time
    number = fair_buckets.c.next_tag.type
    return text(take_tags_sql(dialect)).bindparams(
        bindparam("now", type_=number), bindparam("step", type_=number)
    )
