"""Reads of runs: by id, by idempotency key, their attempts, tags and pages of them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    bindparam,
    func,
    insert,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.records import AttemptRecord, RunRecord, positional
from triggerfish._domain.states import RunStatus
from triggerfish.store.tables import attempts, changes, run_tags, runs


def run_from_row(row: Row[Any] | Sequence[Any]) -> RunRecord:
    """The record of a row holding every column of ``runs``, in the table's order
    (``select(runs)``, ``RETURNING *``, a row the driver returned)."""
    return _build_run(row)


_build_run = positional(RunRecord)


def maybe_run(row: Row[Any] | None) -> RunRecord | None:
    return None if row is None else _build_run(row)


def attempt_from_row(row: Row[Any]) -> AttemptRecord:
    """The record of a row holding every column of ``attempts``, in order."""
    return AttemptRecord(*row)


async def get(conn: AsyncConnection, env_id: str, run_id: str) -> RunRecord | None:
    return maybe_run((await conn.execute(_GET, {"id": run_id, "env": env_id})).first())


_GET = select(runs).where(runs.c.id == bindparam("id"), runs.c.environment_id == bindparam("env"))


async def get_by_id(conn: AsyncConnection, run_id: str) -> RunRecord | None:
    return maybe_run((await conn.execute(select(runs).where(runs.c.id == run_id))).first())


async def find_idempotent(
    conn: AsyncConnection, env_id: str, task_id: str, key: str
) -> RunRecord | None:
    stmt = select(runs).where(
        runs.c.environment_id == env_id,
        runs.c.task_identifier == task_id,
        runs.c.idempotency_key == key,
    )
    return maybe_run((await conn.execute(stmt)).first())


async def clear_idempotency_key(conn: AsyncConnection, run_id: str) -> None:
    await conn.execute(update(runs).where(runs.c.id == run_id).values(idempotency_key=None))


async def attempt_version(conn: AsyncConnection, attempt_id: str | None) -> str | None:
    if attempt_id is None:
        return None
    stmt = select(attempts.c.version).where(attempts.c.id == attempt_id)
    return (await conn.execute(stmt)).scalar()


async def run_of_attempt(conn: AsyncConnection, attempt_id: str) -> str | None:
    stmt = select(attempts.c.run_id).where(attempts.c.id == attempt_id)
    return (await conn.execute(stmt)).scalar()


async def attempt_by_id(conn: AsyncConnection, attempt_id: str) -> AttemptRecord | None:
    row = (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()
    return None if row is None else attempt_from_row(row)


async def attempt_in_environment(
    conn: AsyncConnection, env_id: str, attempt_id: str
) -> AttemptRecord | None:
    """The attempt ``attempt_id`` if its run is in environment ``env_id``, else None."""
    row = (await conn.execute(_ATTEMPT_IN_ENV, {"attempt": attempt_id, "env": env_id})).first()
    return None if row is None else attempt_from_row(row)


_ATTEMPT_IN_ENV = (
    select(attempts)
    .select_from(attempts.join(runs, runs.c.id == attempts.c.run_id))
    .where(attempts.c.id == bindparam("attempt"), runs.c.environment_id == bindparam("env"))
)


async def list_attempts(conn: AsyncConnection, run_id: str) -> list[AttemptRecord]:
    rows = (await conn.execute(_ATTEMPTS_OF, {"run": run_id})).all()
    return [attempt_from_row(r) for r in rows]


_ATTEMPTS_OF = (
    select(attempts).where(attempts.c.run_id == bindparam("run")).order_by(attempts.c.number)
)


async def tags_of(conn: AsyncConnection, run_ids: Sequence[str]) -> dict[str, list[str]]:
    if not run_ids:
        return {}
    out: dict[str, list[str]] = {rid: [] for rid in run_ids}
    for rid, tag in (await conn.execute(_TAGS_OF, {"ids": list(run_ids)})).all():
        out[rid].append(tag)
    for tags in out.values():
        tags.sort()
    return out


_TAGS_OF = select(run_tags.c.run_id, run_tags.c.tag).where(
    run_tags.c.run_id.in_(bindparam("ids", expanding=True))
)


# -- listing ------------------------------------------------------------------------


async def page(
    conn: AsyncConnection,
    env_id: str,
    flt: RunFilter,
    *,
    size: int,
    after: str | None = None,
    before: str | None = None,
) -> tuple[list[RunRecord], bool]:
    """One page of runs, newest first, and whether more lie beyond it.

    Run ids sort by creation time, so the cursor is a run id and the page is an
    index range scan on ``(environment_id, id)``, or on ``(environment_id,
    status, id)`` per status when filtered by status.
    """
    conds = _conditions(env_id, flt)
    if before is not None:
        conds.append(runs.c.id > before)
        stmt = _ordered(conds, flt.statuses, ascending=True, limit=size + 1)
        rows = [run_from_row(r) for r in (await conn.execute(stmt)).all()]
        more = len(rows) > size
        return list(reversed(rows[:size])), more
    if after is not None:
        conds.append(runs.c.id < after)
    stmt = _ordered(conds, flt.statuses, ascending=False, limit=size + 1)
    rows = [run_from_row(r) for r in (await conn.execute(stmt)).all()]
    return rows[:size], len(rows) > size


async def with_feed_position(
    conn: AsyncConnection,
    env_id: str,
    *,
    run_ids: Sequence[str] | None = None,
    flt: RunFilter | None = None,
    limit: int,
) -> tuple[list[RunRecord], int]:
    """Runs as they are now and the id of the newest change, read by one statement
    (a realtime subscriber's first state: the changes after that id are all it
    may not reflect). The runs among ``run_ids``, or those matching ``flt``,
    newest first, at most ``limit``; the id is 0 when no run matches."""
    conds = _conditions(env_id, flt or RunFilter())
    if run_ids is not None:
        conds.append(runs.c.id.in_(list(run_ids)))
    newest = select(func.max(changes.c.id)).scalar_subquery()
    stmt = select(runs, newest).where(*conds).order_by(runs.c.id.desc()).limit(limit)
    rows = (await conn.execute(stmt)).all()
    position = int(rows[0][-1] or 0) if rows else 0
    return [run_from_row(r[:-1]) for r in rows], position


def _conditions(env_id: str, flt: RunFilter) -> list[ColumnElement[bool]]:
    """The WHERE terms of ``flt`` but its statuses (``_ordered`` reads those)."""
    conds = [runs.c.environment_id == env_id]
    if flt.task_ids:
        conds.append(runs.c.task_identifier.in_(list(flt.task_ids)))
    if flt.versions:
        conds.append(runs.c.locked_version.in_(list(flt.versions)))
    if flt.queues:
        conds.append(runs.c.queue_name.in_(list(flt.queues)))
    if flt.machines:
        conds.append(runs.c.machine.in_(list(flt.machines)))
    if flt.batch_id:
        conds.append(runs.c.batch_id == flt.batch_id)
    if flt.idempotency_prefix:
        conds.append(runs.c.idempotency_key.startswith(flt.idempotency_prefix, autoescape=True))
    if flt.schedule_id:
        conds.append(runs.c.schedule_id == flt.schedule_id)
    if flt.is_test is not None:
        conds.append(runs.c.is_test == flt.is_test)
    if flt.created_from:
        conds.append(runs.c.created_at >= flt.created_from)
    if flt.created_to:
        conds.append(runs.c.created_at <= flt.created_to)
    if flt.tags:
        tagged = select(run_tags.c.run_id).where(
            run_tags.c.environment_id == env_id, run_tags.c.tag.in_(list(flt.tags))
        )
        conds.append(runs.c.id.in_(tagged))
    return conds


async def count_matching(
    conn: AsyncConnection, env_id: str, flt: RunFilter, *, cap: int, below: str | None = None
) -> int:
    """How many runs match ``flt`` (and sort before the run id ``below``), counted up
    to ``cap`` (``cap + 1`` means more): the index ranges of :func:`page`, read at
    most ``cap + 1`` rows deep."""
    conds = _conditions(env_id, flt)
    if below is not None:
        conds.append(runs.c.id < below)
    matching = _ordered(conds, flt.statuses, ascending=False, limit=cap + 1)
    stmt = select(func.count()).select_from(matching.subquery())
    return int((await conn.execute(stmt)).scalar_one())


def _ordered(
    conds: list[ColumnElement[bool]], statuses: Sequence[str], *, ascending: bool, limit: int
) -> Select[Any]:
    """The first ``limit`` runs matching ``conds`` and one of ``statuses`` (any if
    empty), in id order.

    With several statuses each one is read as its own ordered index range, cut at
    ``limit``, and the ranges are merged. Given ``status IN (...)`` SQLite walks
    ``(environment_id, id)`` and filters, which reads every run of the
    environment when the statuses are rare (open runs among many finished ones).
    """
    order = runs.c.id.asc() if ascending else runs.c.id.desc()
    wanted = sorted(set(statuses))
    if len(wanted) <= 1:
        where = [*conds, runs.c.status == wanted[0]] if wanted else conds
        return select(runs).where(*where).order_by(order).limit(limit)
    ranges = [
        select(runs.c.id).where(*conds, runs.c.status == s).order_by(order).limit(limit).subquery()
        for s in wanted
    ]
    ids = union_all(*(select(r.c.id) for r in ranges))
    return select(runs).where(runs.c.id.in_(ids)).order_by(order).limit(limit)


async def oldest_waiting(conn: AsyncConnection, env_id: str) -> RunRecord | None:
    """The longest-waiting QUEUED run (``ix_runs_env_status_id``)."""
    stmt = (
        select(runs)
        .where(runs.c.environment_id == env_id, runs.c.status == RunStatus.QUEUED.value)
        .order_by(runs.c.id)
        .limit(1)
    )
    return maybe_run((await conn.execute(stmt)).first())


async def status_counts(
    conn: AsyncConnection, env_id: str, statuses: Sequence[str]
) -> dict[str, int]:
    stmt = (
        select(runs.c.status, func.count())
        .where(runs.c.environment_id == env_id, runs.c.status.in_(list(statuses)))
        .group_by(runs.c.status)
    )
    return {s: int(n) for s, n in (await conn.execute(stmt)).all()}


async def get_for_update(conn: AsyncConnection, run_id: str) -> RunRecord | None:
    """The run, row-locked on PostgreSQL for a read-modify-write (metadata)."""
    stmt = select(runs).where(runs.c.id == run_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return maybe_run((await conn.execute(stmt)).first())


async def add_tags(conn: AsyncConnection, row: RunRecord, tags: Sequence[str]) -> list[str]:
    """Add tags a run does not have yet; returns its tags afterwards, sorted."""
    have = set(row.tags or [])
    new = sorted(set(tags) - have)
    if new:
        await conn.execute(
            insert(run_tags),
            [{"run_id": row.id, "tag": t, "environment_id": row.environment_id} for t in new],
        )
        await conn.execute(
            update(runs).where(runs.c.id == row.id).values(tags=sorted(have | set(new)))
        )
    return sorted(have | set(new))


async def find_idempotent_many(
    conn: AsyncConnection, env_id: str, keys: Sequence[tuple[str, str | None]], now: float
) -> dict[tuple[str, str], str]:
    """``(task, key) -> run id`` for idempotency keys that name a live run."""
    wanted = sorted({(t, k) for t, k in keys if k})
    if not wanted:
        return {}
    stmt = select(
        runs.c.id, runs.c.task_identifier, runs.c.idempotency_key, runs.c.idempotency_key_expires_at
    ).where(
        runs.c.environment_id == env_id,
        tuple_(runs.c.task_identifier, runs.c.idempotency_key).in_(wanted),
    )
    out: dict[tuple[str, str], str] = {}
    expired: list[str] = []
    for row in await conn.execute(stmt):
        if row.idempotency_key_expires_at is None or row.idempotency_key_expires_at > now:
            out[(row.task_identifier, row.idempotency_key)] = row.id
        else:
            expired.append(row.id)
    if expired:
        await conn.execute(update(runs).where(runs.c.id.in_(expired)).values(idempotency_key=None))
    return out


async def find_by_idempotency_key(
    conn: AsyncConnection, env_id: str, task_ids: Sequence[str], key: str, limit: int = 20
) -> list[RunRecord]:
    """Runs of these tasks holding ``key`` (``ix_runs_idempotency``: one probe per task)."""
    if not task_ids:
        return []
    stmt = (
        select(runs)
        .where(
            runs.c.environment_id == env_id,
            runs.c.task_identifier.in_(list(task_ids)),
            runs.c.idempotency_key == key,
        )
        .order_by(runs.c.id.desc())
        .limit(limit)
    )
    return [run_from_row(r) for r in (await conn.execute(stmt)).all()]
