"""Queries on waitpoints (what runs wait on) and their waiters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, bindparam, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import (
    DueWaitpoint,
    LockedRun,
    NewWaitpoint,
    WaiterRef,
    WaitpointRecord,
)
from triggerfish._domain.states import WaitpointStatus
from triggerfish.store.tables import run_journal, runs, waitpoint_waiters, waitpoints
from triggerfish.store.values import column_values

PENDING = WaitpointStatus.PENDING.value
#: how many columns of a row are the waitpoint's (joined reads add their own after)
_WIDTH = len(waitpoints.c)


def waitpoint_from_row(row: Row[Any]) -> WaitpointRecord:
    """The record of a row starting with every column of ``waitpoints``, in order."""
    return WaitpointRecord(*row[:_WIDTH])


def _maybe(row: Row[Any] | None) -> WaitpointRecord | None:
    return None if row is None else waitpoint_from_row(row)


#: JSON columns a new waitpoint leaves out when None: SQL NULL, not JSON null
_NULL_WHEN_NONE = ("output", "event_filter", "schema")


async def insert(conn: AsyncConnection, new: NewWaitpoint) -> WaitpointRecord:
    """Insert a waitpoint; the new record, as :func:`get` reads it."""
    values = column_values(new)
    for name in _NULL_WHEN_NONE:
        if values[name] is None:
            del values[name]
    stmt = waitpoints.insert().values(values).returning(*waitpoints.c)
    return waitpoint_from_row((await conn.execute(stmt)).one())


async def get(
    conn: AsyncConnection, waitpoint_id: str, *, lock: bool = False
) -> WaitpointRecord | None:
    """One waitpoint; with ``lock`` its row is locked (PostgreSQL) until commit.

    Waiting on a token locks it first, so a completion racing the wait is
    serialised with it: either the wait sees the completion, or the completion
    sees the waiter.
    """
    stmt = select(waitpoints).where(waitpoints.c.id == waitpoint_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return _maybe((await conn.execute(stmt)).first())


async def by_idempotency_key(
    conn: AsyncConnection, env_id: str, key: str
) -> WaitpointRecord | None:
    stmt = select(waitpoints).where(
        waitpoints.c.environment_id == env_id, waitpoints.c.idempotency_key == key
    )
    return _maybe((await conn.execute(stmt)).first())


async def clear_idempotency_key(conn: AsyncConnection, waitpoint_id: str) -> None:
    await conn.execute(
        update(waitpoints).where(waitpoints.c.id == waitpoint_id).values(idempotency_key=None)
    )


async def add_waiter(
    conn: AsyncConnection, waitpoint_id: str, run_id: str, seq: int, idx: int
) -> None:
    params = {"waitpoint_id": waitpoint_id, "run_id": run_id, "seq": seq, "idx": idx}
    await conn.execute(_ADD_WAITER, params)


# typed text, the same on both stores: SQLAlchemy compiles its ON CONFLICT
# constructs again on every execution, and every durable wait runs this
_WAITER_KEYS = ("waitpoint_id", "run_id", "seq", "idx")
_ADD_WAITER = text(
    "INSERT INTO waitpoint_waiters (waitpoint_id, run_id, seq, idx) "
    "VALUES (:waitpoint_id, :run_id, :seq, :idx) ON CONFLICT DO NOTHING"
).bindparams(*(bindparam(k, type_=waitpoint_waiters.c[k].type) for k in _WAITER_KEYS))


async def complete(
    conn: AsyncConnection,
    waitpoint_id: str,
    *,
    status: str,
    output: Any,
    is_error: bool,
    now: datetime,
) -> WaitpointRecord | None:
    """Resolve a pending waitpoint; ``None`` if it was resolved already (exactly once)."""
    params = {"wp": waitpoint_id, "to": status, "out": output, "is_error": is_error}
    return _maybe((await conn.execute(_COMPLETE, {**params, "now": now})).first())


async def complete_token(
    conn: AsyncConnection, token_id: str, env_id: str, *, output: Any, now: datetime
) -> WaitpointRecord | None:
    """Complete a pending token of ``env_id``; ``None`` if it is not one (any more).

    The usual completion in one guarded statement; the caller looks at the
    row only when this matched nothing, to tell unknown, timed out and done.
    """
    params = {"wp": token_id, "env": env_id, "to": WaitpointStatus.COMPLETED.value, "out": output}
    row = (await conn.execute(_COMPLETE_TOKEN, {**params, "is_error": False, "now": now})).first()
    return _maybe(row)


_COMPLETE = (
    update(waitpoints)
    .where(waitpoints.c.id == bindparam("wp"), waitpoints.c.status == PENDING)
    .values(
        status=bindparam("to"),
        output=bindparam("out"),
        output_is_error=bindparam("is_error"),
        completed_at=bindparam("now"),
    )
    .returning(*waitpoints.c)
)
#: tokens with a schema are read and checked first (``Waitpoints._complete_checked``)
_COMPLETE_TOKEN = _COMPLETE.where(
    waitpoints.c.kind == "TOKEN",
    waitpoints.c.environment_id == bindparam("env"),
    waitpoints.c.schema.is_(None),
)


async def set_schema(conn: AsyncConnection, waitpoint_id: str, schema: dict[str, Any]) -> None:
    """Give a pending token the JSON Schema its completion must satisfy."""
    await conn.execute(
        update(waitpoints)
        .where(waitpoints.c.id == waitpoint_id, waitpoints.c.status == PENDING)
        .values(schema=schema)
    )


async def lock_waiters(conn: AsyncConnection, waitpoint_id: str) -> list[WaiterRef]:
    """The runs waiting on a waitpoint (run id, journal position), their rows locked.

    Call it holding the waitpoint (resolved in this transaction): no waiter
    can be added meanwhile, and runs are locked after what they wait on, in
    id order, the order every resolver uses.
    """
    stmt = _LOCK_WAITERS_PG if conn.dialect.name == "postgresql" else _LOCK_WAITERS
    return [WaiterRef(*r) for r in (await conn.execute(stmt, {"id": waitpoint_id})).all()]


_LOCK_WAITERS = (
    select(waitpoint_waiters.c.run_id, waitpoint_waiters.c.seq)
    .join(runs, runs.c.id == waitpoint_waiters.c.run_id)
    .where(waitpoint_waiters.c.waitpoint_id == bindparam("id"))
    .order_by(waitpoint_waiters.c.run_id)
)
_LOCK_WAITERS_PG = _LOCK_WAITERS.with_for_update(of=runs)


@dataclass(frozen=True, slots=True)
class Wait:
    """A run's wait: its journal entry's kind and status, and its waitpoints."""

    entry_kind: str
    entry_status: str
    #: in the order asked for
    waitpoints: list[WaitpointRecord]


async def pending_wait(conn: AsyncConnection, run_id: str, seq: int) -> Wait | None:
    """The wait of a run at journal position ``seq``; ``None`` without an entry
    (or without waitpoints)."""
    rows = (await conn.execute(_PENDING_WAIT, {"run": run_id, "seq": seq})).all()
    if not rows:
        return None
    kind, status = rows[0].entry_kind, rows[0].entry_status
    return Wait(kind, status, [waitpoint_from_row(r) for r in rows])


_PENDING_WAIT = (
    select(
        waitpoints,
        waitpoint_waiters.c.idx,
        run_journal.c.kind.label("entry_kind"),
        run_journal.c.status.label("entry_status"),
    )
    .select_from(run_journal)
    .join(
        waitpoint_waiters,
        and_(
            waitpoint_waiters.c.run_id == run_journal.c.run_id,
            waitpoint_waiters.c.seq == run_journal.c.seq,
        ),
    )
    .join(waitpoints, waitpoints.c.id == waitpoint_waiters.c.waitpoint_id)
    .where(run_journal.c.run_id == bindparam("run"), run_journal.c.seq == bindparam("seq"))
    .order_by(waitpoint_waiters.c.idx)
)


async def pending_of_runs(
    conn: AsyncConnection, run_ids: Sequence[str]
) -> list[tuple[str, WaitpointRecord]]:
    """(waiting run id, waitpoint) of the pending waitpoints the given runs wait on
    (what a run's detail shows)."""
    if not run_ids:
        return []
    stmt = (
        select(waitpoints, waitpoint_waiters.c.run_id.label("waiter_run_id"))
        .join(waitpoint_waiters, waitpoint_waiters.c.waitpoint_id == waitpoints.c.id)
        .where(waitpoint_waiters.c.run_id.in_(list(run_ids)), waitpoints.c.status == PENDING)
        .order_by(waitpoint_waiters.c.seq, waitpoint_waiters.c.idx)
    )
    return [(r.waiter_run_id, waitpoint_from_row(r)) for r in (await conn.execute(stmt)).all()]


async def lock_run(conn: AsyncConnection, run_id: str) -> LockedRun | None:
    """Lock a waiting run's row (PostgreSQL) so its waits resolve one at a time."""
    stmt = select(runs.c.id, runs.c.status, runs.c.environment_id).where(runs.c.id == run_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    return None if row is None else LockedRun(*row)


async def due(conn: AsyncConnection, now: float, limit: int) -> list[DueWaitpoint]:
    """Pending waitpoints whose time has come (``ix_waitpoints_due``)."""
    stmt = (
        select(waitpoints.c.id, waitpoints.c.kind, waitpoints.c.due_at)
        .where(
            waitpoints.c.status == PENDING,
            waitpoints.c.due_at.is_not(None),
            waitpoints.c.due_at <= now,
        )
        .order_by(waitpoints.c.due_at)
        .limit(limit)
    )
    return [DueWaitpoint(*r) for r in (await conn.execute(stmt)).all()]


async def pending_for_child(conn: AsyncConnection, child_run_id: str) -> list[str]:
    """Ids of the pending waitpoints that wait for a child run."""
    stmt = select(waitpoints.c.id).where(
        waitpoints.c.child_run_id == child_run_id, waitpoints.c.status == PENDING
    )
    return [r[0] for r in (await conn.execute(stmt)).all()]


async def pending_children_of(conn: AsyncConnection, run_id: str) -> list[str]:
    """Pending child runs ``run_id`` waits on that are to be canceled with it."""
    stmt = (
        select(waitpoints.c.child_run_id, waitpoints.c.tags)
        .join(waitpoint_waiters, waitpoint_waiters.c.waitpoint_id == waitpoints.c.id)
        .where(
            waitpoint_waiters.c.run_id == run_id,
            waitpoints.c.status == PENDING,
            waitpoints.c.child_run_id.is_not(None),
        )
    )
    rows = (await conn.execute(stmt)).all()
    return [r.child_run_id for r in rows if "cancel-with-parent" in (r.tags or [])]


async def pending_events(
    conn: AsyncConnection, env_id: str, name: str, event_id: str
) -> list[WaitpointRecord]:
    """Pending waits for event ``name``: those for any id, and those for ``event_id``."""
    stmt = select(waitpoints).where(
        waitpoints.c.environment_id == env_id,
        waitpoints.c.kind == "EVENT",
        waitpoints.c.status == PENDING,
        waitpoints.c.event_name == name,
        or_(waitpoints.c.event_id.is_(None), waitpoints.c.event_id == event_id),
    )
    return [waitpoint_from_row(r) for r in (await conn.execute(stmt)).all()]


async def page_tokens(
    conn: AsyncConnection,
    env_id: str,
    *,
    statuses: Sequence[str] = (),
    idempotency_key: str | None = None,
    tags: Sequence[str] = (),
    size: int,
    after: str | None = None,
) -> tuple[list[WaitpointRecord], bool]:
    conds = [waitpoints.c.environment_id == env_id, waitpoints.c.kind == "TOKEN"]
    if statuses:
        conds.append(waitpoints.c.status.in_(list(statuses)))
    if idempotency_key:
        conds.append(waitpoints.c.idempotency_key == idempotency_key)
    if after:
        conds.append(waitpoints.c.id < after)
    stmt = select(waitpoints).where(and_(*conds)).order_by(waitpoints.c.id.desc())
    found = (await conn.execute(stmt.limit(size + 1 if not tags else 10_000))).all()
    rows = [waitpoint_from_row(r) for r in found]
    if tags:
        wanted = set(tags)
        rows = [r for r in rows if wanted & set(r.tags or [])][: size + 1]
    return rows[:size], len(rows) > size


async def count_pending(conn: AsyncConnection, env_id: str) -> int:
    stmt = select(func.count()).where(
        waitpoints.c.environment_id == env_id, waitpoints.c.status == PENDING
    )
    return int((await conn.execute(stmt)).scalar() or 0)
