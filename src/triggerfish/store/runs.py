"""Queries on runs, attempts and their history."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Row,
    Select,
    bindparam,
    case,
    func,
    insert,
    not_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.states import ALLOWED_FROM, AttemptStatus, RunStatus
from triggerfish.store.tables import attempts, run_events, run_tags, runs

# The hottest statements are built once and reused with bound parameters:
# building a statement and its cache key costs more than running it.
_INSERT_RUN = insert(runs)
_INSERT_TAGS = insert(run_tags)
_INSERT_EVENT = insert(run_events)
_INSERT_ATTEMPT = insert(attempts)


async def insert_run(conn: AsyncConnection, values: dict[str, Any], tags: Sequence[str]) -> None:
    await conn.execute(_INSERT_RUN, values)
    if tags:
        await conn.execute(
            _INSERT_TAGS,
            [
                {"run_id": values["id"], "tag": t, "environment_id": values["environment_id"]}
                for t in tags
            ],
        )
    await conn.execute(
        _INSERT_EVENT,
        {
            "run_id": values["id"],
            "from_status": None,
            "to_status": values["status"],
            "attempt_id": None,
            "reason": "triggered",
            "at": values["created_at"],
        },
    )


async def get(conn: AsyncConnection, env_id: str, run_id: str) -> Row[Any] | None:
    return (await conn.execute(_GET, {"id": run_id, "env": env_id})).first()


_GET = select(runs).where(runs.c.id == bindparam("id"), runs.c.environment_id == bindparam("env"))


async def get_by_id(conn: AsyncConnection, run_id: str) -> Row[Any] | None:
    return (await conn.execute(select(runs).where(runs.c.id == run_id))).first()


async def find_idempotent(
    conn: AsyncConnection, env_id: str, task_id: str, key: str
) -> Row[Any] | None:
    stmt = select(runs).where(
        runs.c.environment_id == env_id,
        runs.c.task_identifier == task_id,
        runs.c.idempotency_key == key,
    )
    return (await conn.execute(stmt)).first()


async def clear_idempotency_key(conn: AsyncConnection, run_id: str) -> None:
    await conn.execute(update(runs).where(runs.c.id == run_id).values(idempotency_key=None))


async def transition(
    conn: AsyncConnection,
    run_id: str,
    *,
    to: RunStatus,
    now: datetime,
    attempt_id: str | None = None,
    env_id: str | None = None,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
) -> Row[Any] | None:
    """Move a run to ``to`` if its current status allows it; ``None`` if it did not.

    With ``attempt_id`` the move also requires that attempt to still be the run's
    current one, so a reclaimed attempt's late report changes nothing.
    """
    values = values or {}
    stmt = _transition_statement(
        to, attempt_id is not None, env_id is not None, tuple(sorted(values))
    )
    params = {f"v_{k}": v for k, v in values.items()}
    params.update(t_run=run_id, t_now=now, t_attempt=attempt_id, t_env=env_id)
    row = (await conn.execute(stmt, params)).first()
    if row is not None:
        await conn.execute(
            _INSERT_EVENT,
            {
                "run_id": run_id,
                "from_status": row.previous_status,
                "to_status": to.value,
                "attempt_id": attempt_id,
                "reason": reason,
                "at": now,
            },
        )
    return row


def _new_value(column: str) -> Any:
    value = bindparam(f"v_{column}", type_=runs.c[column].type)
    # a run's start time is its first attempt's: later starts keep it
    return func.coalesce(runs.c.started_at, value) if column == "started_at" else value


@functools.lru_cache(maxsize=256)
def _transition_statement(
    to: RunStatus, by_attempt: bool, by_env: bool, value_keys: tuple[str, ...]
) -> Any:
    """The guarded UPDATE of one transition shape, with every value a bound parameter."""
    stmt = (
        update(runs)
        .where(
            runs.c.id == bindparam("t_run"),
            runs.c.status.in_([s.value for s in ALLOWED_FROM[to]]),
        )
        .values(
            previous_status=runs.c.status,
            status=to.value,
            updated_at=bindparam("t_now"),
            **{k: _new_value(k) for k in value_keys},
        )
        .returning(*runs.c)
    )
    if by_attempt:
        stmt = stmt.where(runs.c.current_attempt_id == bindparam("t_attempt"))
    if by_env:
        stmt = stmt.where(runs.c.environment_id == bindparam("t_env"))
    return stmt


async def transition_many(
    conn: AsyncConnection,
    pairs: Sequence[tuple[str, str]],
    *,
    to: RunStatus,
    now: datetime,
    env_id: str | None = None,
    reason: str | None = None,
    values: dict[str, Any] | None = None,
    outputs: Sequence[Any] | None = None,
) -> list[Row[Any]]:
    """``transition`` for many runs at once, each named with its current attempt.

    One guarded ``UPDATE … WHERE (id, current_attempt_id) IN (…) AND status IN
    (allowed)`` and one insert of history rows, whatever the number of runs:
    each run is guarded exactly as ``transition`` guards it alone, and a run
    that no longer matches is simply not returned. Only one attempt can be a
    run's current one, so at most one pair per run matches. ``outputs`` (one per
    pair) sets each moved run's output, that of its matching pair, in the same
    statement. Returns the moved runs' ``id``, ``current_attempt_id``,
    ``previous_status`` and ``parent_run_id``.
    """
    if not pairs:
        return []
    values = values or {}
    stmt = _transition_many_statement(
        to, env_id is not None, tuple(sorted(values)), len(pairs), outputs is not None
    )
    params = {f"v_{k}": v for k, v in values.items()}
    params.update(t_now=now, t_env=env_id)
    for i, (run_id, attempt_id) in enumerate(pairs):
        params[f"r{i}"] = run_id
        params[f"a{i}"] = attempt_id
    for i, output in enumerate(outputs or ()):
        params[f"o{i}"] = output
    rows = list((await conn.execute(stmt, params)).all())
    if rows:
        await conn.execute(
            _INSERT_EVENT,
            [
                {
                    "run_id": row.id,
                    "from_status": row.previous_status,
                    "to_status": to.value,
                    "attempt_id": row.current_attempt_id,
                    "reason": reason,
                    "at": now,
                }
                for row in rows
            ],
        )
    return rows


@functools.lru_cache(maxsize=128)
def _transition_many_statement(
    to: RunStatus, by_env: bool, value_keys: tuple[str, ...], size: int, with_outputs: bool
) -> Any:
    """The set-based guarded UPDATE of one transition shape and batch size.

    Its parameters are numbered (``r0``, ``a0``, ``o0``…) rather than expanding
    lists: a batch size's statement is built and compiled once, and each run's
    output is written by the same UPDATE (a second one would write every row
    twice, which PostgreSQL pays for in dead row versions).
    """
    ids: list[BindParameter[Any]] = [bindparam(f"r{i}") for i in range(size)]
    attempt_ids: list[BindParameter[Any]] = [bindparam(f"a{i}") for i in range(size)]
    new_values = {k: _new_value(k) for k in value_keys}
    if with_outputs:
        new_values["output"] = case(
            *[
                (
                    (runs.c.id == ids[i]) & (runs.c.current_attempt_id == attempt_ids[i]),
                    bindparam(f"o{i}", type_=runs.c.output.type),
                )
                for i in range(size)
            ],
            else_=runs.c.output,
        )
    stmt = (
        update(runs)
        .where(
            # the plain id list lets both stores walk the primary key
            runs.c.id.in_(ids),
            tuple_(runs.c.id, runs.c.current_attempt_id).in_(
                [tuple_(r, a) for r, a in zip(ids, attempt_ids, strict=True)]
            ),
            runs.c.status.in_([s.value for s in ALLOWED_FROM[to]]),
        )
        .values(
            previous_status=runs.c.status,
            status=to.value,
            updated_at=bindparam("t_now"),
            **new_values,
        )
        .returning(
            runs.c.id, runs.c.current_attempt_id, runs.c.previous_status, runs.c.parent_run_id
        )
    )
    if by_env:
        stmt = stmt.where(runs.c.environment_id == bindparam("t_env"))
    return stmt


async def transition_values(conn: AsyncConnection, run_id: str, **values: Any) -> Row[Any]:
    """Set fields that carry no status change (used right after a guarded transition)."""
    stmt = update(runs).where(runs.c.id == run_id).values(**values).returning(*runs.c)
    return (await conn.execute(stmt)).one()


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
) -> list[Row[Any]]:
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
    return list((await conn.execute(_candidates(*shape), params)).all())


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


@dataclass
class Claim:
    run_id: str
    attempt_id: str
    worker_id: str
    version: str
    lease_expires_at: float
    now: datetime
    #: the worker starts it at once (a free slot waits for it): EXECUTING, not DEQUEUED
    start: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


async def mark_dequeued(conn: AsyncConnection, claims: Sequence[Claim]) -> list[Row[Any]]:
    """Claim the runs in one batch: one guarded UPDATE … RETURNING, then the
    attempt rows and history rows; returns the claimed runs in ``claims`` order.

    Claims with ``start`` go straight on to EXECUTING (history shows both
    steps), saving the worker a start report per run.
    """
    if not claims:
        return []
    params: dict[str, Any] = {}
    for i, c in enumerate(claims):
        params.update(
            {
                f"r{i}": c.run_id,
                f"a{i}": c.attempt_id,
                f"s{i}": (RunStatus.EXECUTING if c.start else RunStatus.DEQUEUED).value,
                f"t{i}": c.now if c.start else None,
                f"w{i}": c.worker_id,
                f"l{i}": c.lease_expires_at,
                f"n{i}": c.now,
            }
        )
    rows = (await conn.execute(_claim_statement(len(claims)), params)).all()
    by_id = {r.id: r for r in rows}
    # a run another claimer took first did not match the guarded update
    claims = [c for c in claims if c.run_id in by_id]
    if not claims:
        return []
    await conn.execute(
        _INSERT_ATTEMPT,
        [
            {
                "id": c.attempt_id,
                "run_id": c.run_id,
                "number": by_id[c.run_id].attempt_count,
                "status": AttemptStatus.EXECUTING if c.start else AttemptStatus.PENDING,
                "worker_id": c.worker_id,
                "version": c.version,
                "created_at": c.now,
                "started_at": c.now if c.start else None,
            }
            for c in claims
        ],
    )
    await conn.execute(_INSERT_EVENT, [e for c in claims for e in _claim_events(c)])
    return [by_id[c.run_id] for c in claims]


@functools.lru_cache(maxsize=128)
def _claim_statement(size: int) -> Any:
    """The guarded claim of ``size`` queued runs, each with its own values.

    One statement for the batch, with numbered parameters (``r0``, ``a0``…):
    each run's values are picked by its id, and a run that is no longer
    ``QUEUED`` matches nothing and is not returned.
    """
    ids: list[BindParameter[Any]] = [bindparam(f"r{i}") for i in range(size)]

    def per_run(prefix: str, type_: Any) -> Any:
        branches = {ids[i]: bindparam(f"{prefix}{i}", type_=type_) for i in range(size)}
        return case(branches, value=runs.c.id)

    return (
        update(runs)
        .where(runs.c.id.in_(ids), runs.c.status == RunStatus.QUEUED.value)
        .values(
            previous_status=runs.c.status,
            status=per_run("s", runs.c.status.type),
            attempt_count=runs.c.attempt_count + 1,
            current_attempt_id=per_run("a", runs.c.current_attempt_id.type),
            worker_id=per_run("w", runs.c.worker_id.type),
            lease_expires_at=per_run("l", runs.c.lease_expires_at.type),
            updated_at=per_run("n", runs.c.updated_at.type),
            # a run's start time is its first attempt's: later starts keep it
            started_at=func.coalesce(runs.c.started_at, per_run("t", runs.c.started_at.type)),
        )
        .returning(*runs.c)
    )


def _claim_events(claim: Claim) -> list[dict[str, Any]]:
    events = [
        {
            "run_id": claim.run_id,
            "from_status": RunStatus.QUEUED.value,
            "to_status": RunStatus.DEQUEUED.value,
            "attempt_id": claim.attempt_id,
            "reason": f"claimed by {claim.worker_id}",
            "at": claim.now,
        }
    ]
    if claim.start:
        events.append(
            {
                "run_id": claim.run_id,
                "from_status": RunStatus.DEQUEUED.value,
                "to_status": RunStatus.EXECUTING.value,
                "attempt_id": claim.attempt_id,
                "reason": "attempt started",
                "at": claim.now,
            }
        )
    return events




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


async def expired_leases(conn: AsyncConnection, now: float, limit: int) -> list[Row[Any]]:
    stmt = (
        select(runs.c.id, runs.c.current_attempt_id, runs.c.status)
        .where(status_in(*ACTIVE), runs.c.lease_expires_at < now)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def due_delayed(conn: AsyncConnection, now: float, limit: int) -> list[Row[Any]]:
    stmt = (
        select(
            runs.c.id,
            runs.c.environment_id,
            runs.c.queue_name,
            runs.c.concurrency_key,
            runs.c.priority,
        )
        .where(runs.c.status == RunStatus.DELAYED.value, runs.c.available_at <= now)
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def past_ttl(conn: AsyncConnection, now: float, limit: int) -> list[Row[Any]]:
    stmt = (
        select(runs.c.id)
        .where(
            runs.c.expires_at.is_not(None),
            runs.c.expires_at < now,
            status_in(RunStatus.QUEUED, RunStatus.DELAYED),
        )
        .limit(limit)
    )
    return list((await conn.execute(stmt)).all())


async def next_available_at(conn: AsyncConnection, env_id: str) -> float | None:
    stmt = select(func.min(runs.c.available_at)).where(
        runs.c.environment_id == env_id, runs.c.status == RunStatus.QUEUED.value
    )
    value = (await conn.execute(stmt)).scalar()
    return float(value) if value is not None else None


# -- attempts ---------------------------------------------------------------------


async def update_attempt(conn: AsyncConnection, attempt_id: str, **values: Any) -> None:
    params = {f"v_{k}": v for k, v in values.items()}
    params["a_id"] = attempt_id
    await conn.execute(_attempt_update(tuple(sorted(values))), params)


@functools.lru_cache(maxsize=64)
def _attempt_update(value_keys: tuple[str, ...]) -> Any:
    return (
        update(attempts)
        .where(attempts.c.id == bindparam("a_id"))
        .values(**{k: bindparam(f"v_{k}", type_=attempts.c[k].type) for k in value_keys})
    )


async def update_attempts(conn: AsyncConnection, attempt_ids: Sequence[str], **values: Any) -> None:
    """``update_attempt`` with the same values for many attempts: one statement."""
    if not attempt_ids:
        return
    params = {f"v_{k}": v for k, v in values.items()}
    params["a_ids"] = list(attempt_ids)
    await conn.execute(_attempts_update(tuple(sorted(values))), params)


@functools.lru_cache(maxsize=64)
def _attempts_update(value_keys: tuple[str, ...]) -> Any:
    return (
        update(attempts)
        .where(attempts.c.id.in_(bindparam("a_ids", expanding=True)))
        .values(**{k: bindparam(f"v_{k}", type_=attempts.c[k].type) for k in value_keys})
    )


async def attempt_version(conn: AsyncConnection, attempt_id: str | None) -> str | None:
    if attempt_id is None:
        return None
    stmt = select(attempts.c.version).where(attempts.c.id == attempt_id)
    return (await conn.execute(stmt)).scalar()


async def run_of_attempt(conn: AsyncConnection, attempt_id: str) -> str | None:
    stmt = select(attempts.c.run_id).where(attempts.c.id == attempt_id)
    return (await conn.execute(stmt)).scalar()


async def attempt_by_id(conn: AsyncConnection, attempt_id: str) -> Row[Any] | None:
    return (await conn.execute(select(attempts).where(attempts.c.id == attempt_id))).first()


async def list_attempts(conn: AsyncConnection, run_id: str) -> list[Row[Any]]:
    return list((await conn.execute(_ATTEMPTS_OF, {"run": run_id})).all())


_ATTEMPTS_OF = (
    select(attempts).where(attempts.c.run_id == bindparam("run")).order_by(attempts.c.number)
)


async def list_events(conn: AsyncConnection, run_id: str) -> list[Row[Any]]:
    stmt = select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id)
    return list((await conn.execute(stmt)).all())


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
) -> tuple[list[Row[Any]], bool]:
    """One page of runs, newest first, and whether more lie beyond it.

    Run ids sort by creation time, so the cursor is a run id and the page is an
    index range scan on ``(environment_id, id)``, or on ``(environment_id,
    status, id)`` per status when filtered by status.
    """
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
    if before is not None:
        conds.append(runs.c.id > before)
        stmt = _ordered(conds, flt.statuses, ascending=True, limit=size + 1)
        rows = list((await conn.execute(stmt)).all())
        more = len(rows) > size
        return list(reversed(rows[:size])), more
    if after is not None:
        conds.append(runs.c.id < after)
    stmt = _ordered(conds, flt.statuses, ascending=False, limit=size + 1)
    rows = list((await conn.execute(stmt)).all())
    return rows[:size], len(rows) > size


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


async def oldest_waiting(conn: AsyncConnection, env_id: str) -> Row[Any] | None:
    """The longest-waiting QUEUED run (``ix_runs_env_status_id``)."""
    stmt = (
        select(runs)
        .where(runs.c.environment_id == env_id, runs.c.status == RunStatus.QUEUED.value)
        .order_by(runs.c.id)
        .limit(1)
    )
    return (await conn.execute(stmt)).first()


async def status_counts(
    conn: AsyncConnection, env_id: str, statuses: Sequence[str]
) -> dict[str, int]:
    stmt = (
        select(runs.c.status, func.count())
        .where(runs.c.environment_id == env_id, runs.c.status.in_(list(statuses)))
        .group_by(runs.c.status)
    )
    return {s: int(n) for s, n in (await conn.execute(stmt)).all()}


async def get_for_update(conn: AsyncConnection, run_id: str) -> Row[Any] | None:
    """The run, row-locked on PostgreSQL for a read-modify-write (metadata)."""
    stmt = select(runs).where(runs.c.id == run_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).first()


async def add_tags(conn: AsyncConnection, row: Row[Any], tags: Sequence[str]) -> list[str]:
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


async def reschedule_delayed(
    conn: AsyncConnection, env_id: str, run_id: str, until: float, when: datetime, now: datetime
) -> Row[Any] | None:
    """Move a DELAYED run's start (and its TTL deadline with it); ``None`` if it is
    not (or no longer) DELAYED."""
    stmt = (
        update(runs)
        .where(
            runs.c.id == run_id,
            runs.c.environment_id == env_id,
            runs.c.status == RunStatus.DELAYED.value,
        )
        .values(
            expires_at=runs.c.expires_at + (until - runs.c.available_at),
            available_at=until,
            delayed_until=when,
            updated_at=now,
        )
        .returning(*runs.c)
    )
    row = (await conn.execute(stmt)).first()
    if row is not None:
        await conn.execute(
            insert(run_events).values(
                run_id=run_id,
                from_status=RunStatus.DELAYED.value,
                to_status=RunStatus.DELAYED.value,
                reason=f"rescheduled to {when.isoformat()}Z",
                at=now,
            )
        )
    return row


async def insert_runs(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many runs with their tags and first history rows: three statements."""
    if not rows:
        return
    await conn.execute(insert(runs), list(rows))
    tag_rows = [
        {"run_id": r["id"], "tag": t, "environment_id": r["environment_id"]}
        for r in rows
        for t in r["tags"]
    ]
    if tag_rows:
        await conn.execute(insert(run_tags), tag_rows)
    await conn.execute(
        insert(run_events),
        [
            {
                "run_id": r["id"],
                "from_status": None,
                "to_status": r["status"],
                "reason": "triggered in a batch",
                "at": r["created_at"],
            }
            for r in rows
        ],
    )


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
        await conn.execute(
            update(runs).where(runs.c.id.in_(expired)).values(idempotency_key=None)
        )
    return out


async def find_debounced(
    conn: AsyncConnection, env_id: str, task_id: str, key: str
) -> Row[Any] | None:
    """The DELAYED run waiting under a debounce key (``ix_runs_debounce``), row-locked
    on PostgreSQL so concurrent triggers of the burst update it one at a time."""
    stmt = select(runs).where(
        runs.c.environment_id == env_id,
        runs.c.task_identifier == task_id,
        runs.c.debounce_key == key,
        runs.c.status == RunStatus.DELAYED.value,
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).first()


async def update_debounced(
    conn: AsyncConnection,
    run_id: str,
    *,
    payload: Any,
    metadata: Any,
    start: float,
    when: datetime,
    now: datetime,
) -> bool:
    """Give a waiting debounced run the newest payload and start time (still DELAYED)."""
    stmt = (
        update(runs)
        .where(runs.c.id == run_id, runs.c.status == RunStatus.DELAYED.value)
        .values(
            payload=payload,
            run_metadata=metadata,
            expires_at=runs.c.expires_at + (start - runs.c.available_at),
            available_at=start,
            delayed_until=when,
            updated_at=now,
        )
        .returning(runs.c.id)
    )
    return (await conn.execute(stmt)).first() is not None
