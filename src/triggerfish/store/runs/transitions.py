"""Every statement that writes a run's or an attempt's status.

A run's status moves only by a guarded statement whose ``WHERE status IN (…)``
is ``ALLOWED_FROM[to]`` (``_domain/states.py``), rendered from that table, and
each move writes its history row (``history``) in the same transaction. An
attempt's status follows its run's: it is written in the transaction that
moved the run, by the attempt id that move was guarded on.

The general operations (``transition``, ``transition_many``, ``mark_dequeued``)
work on both stores through SQLAlchemy. Beside ``mark_dequeued`` sit its
one-statement PostgreSQL variants, each under a contract naming the general
operations it replaces and what must agree (rows, history, guards); the tests
in ``tests/store/test_fast_paths.py`` run both on the same inputs and compare.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BindParameter,
    bindparam,
    case,
    func,
    insert,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import MovedRun, NewRun, RunRecord
from triggerfish._domain.states import ALLOWED_FROM, ATTEMPT_FOR, AttemptStatus, RunStatus
from triggerfish.store import queues as queue_store
from triggerfish.store.db import Database, fetch_on_driver, stored_row
from triggerfish.store.runs import _render, history
from triggerfish.store.runs.insert import _PG_FAIR_TAG, QUEUED_COLUMNS, new_run_params
from triggerfish.store.runs.queries import run_from_row
from triggerfish.store.tables import attempts, runs

# The hottest statements are built once and reused with bound parameters:
# building a statement and its cache key costs more than running it.
_INSERT_ATTEMPT = insert(attempts)


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
    lease_before: float | None = None,
) -> RunRecord | None:
    """Move a run to ``to`` if its current status allows it; ``None`` if it did not.

    With ``attempt_id`` the move also requires that attempt to still be the run's
    current one, so a reclaimed attempt's late report changes nothing. With
    ``lease_before`` (a reclaim) it requires the run's lease to have run out
    before that time: a lease renewed meanwhile, or one in its grace after a
    database outage (``engine/health.py``), is not taken.
    """
    values = values or {}
    stmt = _transition_statement(
        to,
        attempt_id is not None,
        env_id is not None,
        tuple(sorted(values)),
        lease_before is not None,
    )
    params = {f"v_{k}": v for k, v in values.items()}
    params.update(t_run=run_id, t_now=now, t_attempt=attempt_id, t_env=env_id, t_lease=lease_before)
    row = (await conn.execute(stmt, params)).first()
    if row is not None:
        event = history.row(
            run_id, row.previous_status, to.value, at=now, attempt_id=attempt_id, reason=reason
        )
        await history.record(conn, [event])
        return run_from_row(row)
    return None


def _statuses(allowed: frozenset[RunStatus]) -> list[str]:
    return sorted(s.value for s in allowed)


def _new_value(column: str) -> Any:
    value = bindparam(f"v_{column}", type_=runs.c[column].type)
    # a run's start time is its first attempt's: later starts keep it
    return func.coalesce(runs.c.started_at, value) if column == "started_at" else value


@functools.lru_cache(maxsize=256)
def _transition_statement(
    to: RunStatus,
    by_attempt: bool,
    by_env: bool,
    value_keys: tuple[str, ...],
    by_lease: bool = False,
) -> Any:
    """The guarded UPDATE of one transition shape, with every value a bound parameter."""
    stmt = (
        update(runs)
        .where(
            runs.c.id == bindparam("t_run"),
            runs.c.status.in_(_statuses(ALLOWED_FROM[to])),
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
    if by_lease:
        stmt = stmt.where(runs.c.lease_expires_at < bindparam("t_lease"))
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
) -> list[MovedRun]:
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
    rows = [MovedRun(*r) for r in (await conn.execute(stmt, params)).all()]
    events = [
        history.row(
            row.id,
            row.previous_status,
            to.value,
            at=now,
            attempt_id=row.current_attempt_id,
            reason=reason,
        )
        for row in rows
    ]
    await history.record(conn, events)
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
            runs.c.status.in_(_statuses(ALLOWED_FROM[to])),
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


async def transition_values(conn: AsyncConnection, run_id: str, **values: Any) -> RunRecord:
    """Set fields that carry no status change (used right after a guarded transition)."""
    stmt = update(runs).where(runs.c.id == run_id).values(**values).returning(*runs.c)
    return run_from_row((await conn.execute(stmt)).one())


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


async def mark_dequeued(conn: AsyncConnection, claims: Sequence[Claim]) -> list[RunRecord]:
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
    by_id = {r.id: run_from_row(r) for r in rows}
    # a run another claimer took first did not match the guarded update
    claims = [c for c in claims if c.run_id in by_id]
    if not claims:
        return []
    await conn.execute(
        _INSERT_ATTEMPT,
        [
            new_attempt(
                c.attempt_id,
                c.run_id,
                number=by_id[c.run_id].attempt_count,
                claimed=RunStatus(by_id[c.run_id].status),
                worker_id=c.worker_id,
                version=c.version,
                at=c.now,
            )
            for c in claims
        ],
    )
    events = [
        event
        for c in claims
        for event in history.claimed(c.run_id, c.attempt_id, c.worker_id, start=c.start, at=c.now)
    ]
    await history.record(conn, events)
    return [by_id[c.run_id] for c in claims]


@functools.lru_cache(maxsize=128)
def _claim_statement(size: int) -> Any:
    """The guarded claim of ``size`` queued runs, each with its own values.

    One statement for the batch, with numbered parameters (``r0``, ``a0``…):
    each run's values are picked by its id, and a run whose status may no
    longer move to DEQUEUED (it is not QUEUED) matches nothing and is not
    returned.
    """
    ids: list[BindParameter[Any]] = [bindparam(f"r{i}") for i in range(size)]

    def per_run(prefix: str, type_: Any) -> Any:
        branches = {ids[i]: bindparam(f"{prefix}{i}", type_=type_) for i in range(size)}
        return case(branches, value=runs.c.id)

    return (
        update(runs)
        .where(runs.c.id.in_(ids), runs.c.status.in_(_statuses(ALLOWED_FROM[RunStatus.DEQUEUED])))
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


# -- attempts ---------------------------------------------------------------------

#: the columns of a new attempt, in the order the raw statements list them
ATTEMPT_COLUMNS = (
    "id",
    "run_id",
    "number",
    "status",
    "worker_id",
    "version",
    "created_at",
    "started_at",
)


def new_attempt(
    attempt_id: str,
    run_id: str,
    *,
    number: int,
    claimed: RunStatus,
    worker_id: str,
    version: str,
    at: datetime,
) -> dict[str, Any]:
    """A claimed run's new attempt: its status follows the run's (``ATTEMPT_FOR``),
    started now if the claim started the run."""
    status = ATTEMPT_FOR[claimed]
    started = at if status is AttemptStatus.EXECUTING else None
    values = (attempt_id, run_id, number, status.value, worker_id, version, at, started)
    return dict(zip(ATTEMPT_COLUMNS, values, strict=True))


def new_attempts_sql(
    source: str,
    *,
    attempt_id: str,
    run_id: str,
    number: str,
    claimed: str,
    worker_id: str,
    version: str,
    at: str,
) -> str:
    """``new_attempt`` as a raw statement's insert: one attempt per row of
    ``source``, each argument an SQL expression over it (``claimed``: the run's
    claimed status)."""
    status = " ".join(
        f"WHEN {_render.status(run)} THEN {_render.status(attempt)}"
        for run, attempt in ATTEMPT_FOR.items()
    )
    executing = [run for run, attempt in ATTEMPT_FOR.items() if attempt is AttemptStatus.EXECUTING]
    started = " ".join(f"WHEN {_render.status(run)} THEN {at}" for run in executing)
    return f"""INSERT INTO attempts ({", ".join(ATTEMPT_COLUMNS)})
  SELECT {attempt_id}, {run_id}, {number}, CASE {claimed} {status} END,
         {worker_id}, {version}, {at}, CASE {claimed} {started} END
  FROM {source}"""


async def update_attempt(
    conn: AsyncConnection, attempt_id: str, *, status: AttemptStatus, **values: Any
) -> None:
    """Set an attempt's status (and ``values``), in the transaction that moved its
    run by a transition guarded on this attempt."""
    params = {f"v_{k}": v for k, v in values.items()}
    params.update(a_id=attempt_id, a_status=status.value)
    await conn.execute(_attempt_update(tuple(sorted(values))), params)


@functools.lru_cache(maxsize=64)
def _attempt_update(value_keys: tuple[str, ...]) -> Any:
    return (
        update(attempts)
        .where(attempts.c.id == bindparam("a_id"))
        .values(
            status=bindparam("a_status"),
            **{k: bindparam(f"v_{k}", type_=attempts.c[k].type) for k in value_keys},
        )
    )


async def update_attempts(
    conn: AsyncConnection, attempt_ids: Sequence[str], *, status: AttemptStatus, **values: Any
) -> None:
    """``update_attempt`` with the same values for many attempts: one statement."""
    if not attempt_ids:
        return
    params = {f"v_{k}": v for k, v in values.items()}
    params.update(a_ids=list(attempt_ids), a_status=status.value)
    await conn.execute(_attempts_update(tuple(sorted(values))), params)


@functools.lru_cache(maxsize=64)
def _attempts_update(value_keys: tuple[str, ...]) -> Any:
    return (
        update(attempts)
        .where(attempts.c.id.in_(bindparam("a_ids", expanding=True)))
        .values(
            status=bindparam("a_status"),
            **{k: bindparam(f"v_{k}", type_=attempts.c[k].type) for k in value_keys},
        )
    )


# -- one-statement claims (PostgreSQL) ------------------------------------------


@dataclass(frozen=True)
class SimpleClaim:
    """Who claims, and how many: the inputs of one unconstrained claim."""

    env_id: str
    task_ids: Sequence[str]
    worker_id: str
    version: str
    #: the epoch seconds the claim happens at, and the same as stored
    now: float
    now_at: Any
    lease_expires_at: float
    #: one fresh attempt id per run wanted; as many runs are claimed at most
    attempt_ids: Sequence[str]
    #: the first ``start`` runs go straight on to EXECUTING
    start: int


Fetch = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


def in_transaction(conn: AsyncConnection) -> Fetch:
    """Run the claim in ``conn``'s transaction (``fetch_on_driver``: it must be the
    transaction's last statement, or come after its first)."""
    return functools.partial(fetch_on_driver, conn)


async def claim_unconstrained(fetch: Fetch, claim: SimpleClaim) -> list[RunRecord] | None:
    """Claim up to ``len(claim.attempt_ids)`` queued runs in fair order.

    Returns the claimed runs in order, or None when the environment has a
    concurrency limit or a constrained queue (nothing was claimed; take the
    general path). PostgreSQL only. ``fetch`` runs the statement: a
    transaction's (``in_transaction``) or its own (``Database.fetch_alone``).
    """
    rows = await fetch(_STATEMENT, _params(claim))
    if rows[0]["blocked"]:
        return None
    # asyncpg hands back the values as SQLAlchemy would: it has no result
    # processors for these types on asyncpg (JSON is decoded by the codec it
    # registers on every connection)
    return [run_from_row(row[1:]) for row in rows if row["id"] is not None]


# $1 env, $2 now (epoch), $3 task ids, $4 worker version, $5 how many, $6 attempt
# ids, $7 how many start, $8 worker id, $9 lease expiry, $10 now (timestamp),
# $11 the history reason
def _params(claim: SimpleClaim) -> list[Any]:
    return [
        claim.env_id,
        claim.now,
        list(claim.task_ids),
        claim.version,
        len(claim.attempt_ids),
        list(claim.attempt_ids),
        claim.start,
        claim.worker_id,
        claim.lease_expires_at,
        claim.now_at,
        f"claimed by {claim.worker_id}",
    ]


@dataclass(frozen=True)
class Successes:
    """Successful attempts a worker reports along with its claim: one per run."""

    run_ids: Sequence[str]
    attempt_ids: Sequence[str]
    outputs: Sequence[Any]


async def claim_unconstrained_after(
    db: Database, claim: SimpleClaim, successes: Successes
) -> tuple[set[str], list[RunRecord] | None]:
    """Record ``successes`` and claim, in one statement of its own: the common
    exchange of a busy worker (PostgreSQL only).

    Returns the runs it completed (a stale report's run, or one a parent waits
    on, is not among them: record those by the general path) and the claimed
    runs, or None when something constrains the environment (the successes were
    recorded all the same; claim by the general path).
    """
    if len(set(successes.run_ids)) != len(successes.run_ids):
        raise ValueError("one success per run: a run named twice is for the general path")
    outputs = [
        stored_row(runs, db.engine.dialect, ("output",), {"output": o})[0]
        for o in successes.outputs
    ]  # JSON text, as SQLAlchemy stores it
    params = [*_params(claim), list(successes.run_ids), list(successes.attempt_ids), outputs]
    rows = await db.fetch_alone(_WITH_SUCCESSES, params)
    done = set(rows[0]["done"])
    if rows[0]["blocked"]:
        return done, None
    return done, [run_from_row(row[2:]) for row in rows if row["id"] is not None]


#: rows when something constrains environment $1: its own limit, or a queue with a
#: limit, a key limit, a rate limit, or paused (then only the general path may claim)
BLOCKED = """blocked AS (
  SELECT 1 AS one FROM environments WHERE id = $1 AND concurrency_limit IS NOT NULL
  UNION ALL
  SELECT 1 FROM queues
  WHERE environment_id = $1
    AND (concurrency_limit IS NOT NULL OR concurrency_limit_override IS NOT NULL
         OR concurrency_key_limit IS NOT NULL OR rate_limit_count IS NOT NULL OR paused)
  LIMIT 1
)"""

_EXECUTING = _render.status(RunStatus.EXECUTING)
_DEQUEUED = _render.status(RunStatus.DEQUEUED)

#: every column of ``runs`` as the table lists them, from the relation ``c``
COLUMNS = ", ".join(f"c.{c.name}" for c in runs.c)

#: an attempt for each claimed run
_CLAIMED_ATTEMPTS = new_attempts_sql(
    "claimed",
    attempt_id="current_attempt_id",
    run_id="id",
    number="attempt_count",
    claimed="status",
    worker_id="$8",
    version="$4",
    at="$10::timestamp",
)

_CLAIM = f"""{BLOCKED}, picked AS (
  SELECT id, order_key FROM runs
  WHERE environment_id = $1 AND {_render.guard("status", RunStatus.DEQUEUED)}
    AND available_at <= $2::float8
    AND task_identifier = ANY($3::varchar[])
    AND (locked_version IS NULL OR locked_version = $4)
    AND NOT EXISTS (SELECT 1 FROM blocked)
  ORDER BY order_key
  LIMIT $5
  FOR UPDATE SKIP LOCKED
), ordered AS (
  -- one array, so the update finds its rows by primary key: joined with the
  -- picked rows, or guarded by status again, the planner (its statistics behind
  -- a burst of new runs) walked every queued run for each of them. The lock
  -- taken above is the guard: a picked row is QUEUED and stays so until commit.
  SELECT array_agg(id ORDER BY order_key) AS ids FROM picked
), claimed AS (
  UPDATE runs AS r SET
    previous_status = r.status,
    status = CASE WHEN array_position(o.ids, r.id) <= $7 THEN {_EXECUTING} ELSE {_DEQUEUED} END,
    attempt_count = r.attempt_count + 1,
    current_attempt_id = ($6::varchar[])[array_position(o.ids, r.id)],
    worker_id = $8,
    lease_expires_at = $9::float8,
    updated_at = $10::timestamp,
    started_at = coalesce(
      r.started_at, CASE WHEN array_position(o.ids, r.id) <= $7 THEN $10::timestamp END
    )
  FROM ordered AS o
  WHERE r.id = ANY(o.ids)
  RETURNING r.*, array_position(o.ids, r.id) AS claim_n
), attempted AS (
  {_CLAIMED_ATTEMPTS}
), logged AS (
  {history.INSERT_SQL}
  SELECT claimed.id, e.from_status, e.to_status, claimed.current_attempt_id,
         coalesce(e.reason, $11), $10::timestamp
  FROM claimed
  CROSS JOIN (VALUES {history.claim_steps_sql(1)})
       AS e(k, from_status, to_status, reason)
  WHERE e.k = 1 OR claimed.status = {_EXECUTING}
  ORDER BY claimed.claim_n, e.k
)"""

_STATEMENT = f"""WITH {_CLAIM}
SELECT EXISTS (SELECT 1 FROM blocked) AS blocked, {COLUMNS}
FROM (SELECT 1) AS one LEFT JOIN claimed AS c ON true
ORDER BY c.claim_n
"""

# A worker's successes, recorded by the claim's statement: $12 the runs, $13 their
# attempts (one per run), $14 their outputs as JSON text. Guarded like
# ``runs.transition_many`` (the run's current attempt, a status COMPLETED may
# follow). A run that a parent waits on is left alone: its parent's wait is
# resolved in the transaction that completes it, by the general path.
_SUCCESSES = f"""done AS (
  UPDATE runs AS r SET
    previous_status = r.status,
    status = {_render.status(RunStatus.COMPLETED)},
    updated_at = $10::timestamp,
    finished_at = $10::timestamp,
    lease_expires_at = NULL,
    output = (($14::text[])[array_position($12::varchar[], r.id)])::json
  WHERE r.id = ANY($12::varchar[])
    AND r.current_attempt_id = ($13::varchar[])[array_position($12::varchar[], r.id)]
    AND r.environment_id = $1 AND {_render.guard("r.status", RunStatus.COMPLETED)}
    AND r.parent_run_id IS NULL
  RETURNING r.id, r.current_attempt_id, r.previous_status
), done_attempts AS (
  UPDATE attempts SET status = {_render.status(AttemptStatus.COMPLETED)},
    finished_at = $10::timestamp
  WHERE id IN (SELECT current_attempt_id FROM done)
), done_logged AS (
  {history.INSERT_SQL}
  SELECT id, previous_status, {_render.status(RunStatus.COMPLETED)}, current_attempt_id,
         {_render.text(history.SUCCEEDED)}, $10::timestamp
  FROM done ORDER BY array_position($12::varchar[], id)
)"""

_WITH_SUCCESSES = f"""WITH {_CLAIM}, {_SUCCESSES}
SELECT EXISTS (SELECT 1 FROM blocked) AS blocked,
       (SELECT coalesce(array_agg(id), '{{}}') FROM done) AS done, {COLUMNS}
FROM (SELECT 1) AS one LEFT JOIN claimed AS c ON true
ORDER BY c.claim_n
"""


@dataclass(frozen=True)
class HandOff:
    """The claim a new run is stored under when the database allows it: a worker's
    claim parked on this server (see ``engine/handoff.py``)."""

    #: the worker's tasks and version: an older queued run of these comes first
    task_ids: Sequence[str]
    version: str
    worker_id: str
    attempt_id: str
    lease_expires_at: float
    #: EXECUTING at once (the worker has a free slot), or DEQUEUED
    start: bool
    #: the claim's time as stored, and its history reason
    now_at: Any
    reason: str


async def insert_and_hand_off_alone(
    db: Database, new: NewRun, *, now: float, quantum: float, hand_off: HandOff
) -> tuple[float, RunRecord | None]:
    """``insert_queued_run_alone``, with the run claimed for ``hand_off`` in the same
    statement when nothing constrains the environment and no older run is queued
    for the worker (exactly when its claim would take this run first).

    Returns the order key and the claimed run, or None when the run was only
    queued. PostgreSQL only.
    """
    if RunStatus(new.status) not in ALLOWED_FROM[RunStatus.DEQUEUED]:
        raise ValueError(f"a new {new.status} run cannot be claimed: it is not queued")
    params = new_run_params(db.engine.dialect, new, now, quantum)
    params += [
        list(hand_off.task_ids),
        hand_off.version,
        hand_off.attempt_id,
        hand_off.worker_id,
        hand_off.lease_expires_at,
        (RunStatus.EXECUTING if hand_off.start else RunStatus.DEQUEUED).value,
        hand_off.now_at,
        hand_off.reason,
    ]
    first = (await db.fetch_alone(_pg_hand_off_statement(QUEUED_COLUMNS), params))[0]
    claimed = run_from_row(first[1:]) if first["handed"] else None
    return float(first["order_key"]), claimed


@functools.lru_cache(maxsize=16)
def _pg_hand_off_statement(columns: tuple[str, ...]) -> str:
    # the parameters of _pg_statement, then the claim's: n+1 the worker's task ids,
    # n+2 its version, n+3 the attempt id, n+4 the worker id, n+5 the lease expiry,
    # n+6 the claimed status, n+7 the claim's time, n+8 its history reason
    n = 6 + len(columns)
    kinds = ["varchar[]", "varchar", "varchar", "varchar", "float8", "varchar", "timestamp", "text"]
    tasks, version, attempt, worker, lease, claimed, at, reason = (
        f"${n + i}::{kind}" for i, kind in enumerate(kinds, start=1)
    )
    placeholders = [
        f"${i}{'::json' if isinstance(runs.c[name].type, JSON) else ''}"
        for i, name in enumerate(columns, start=7)
    ]
    priority = placeholders[columns.index("priority")]
    status = f"{placeholders[columns.index('status')]}::varchar"
    go = "(SELECT go FROM gate)"
    placeholders[columns.index("status")] = f"CASE WHEN {go} THEN {claimed} ELSE {status} END"
    clock = queue_store.service_clock_sql().replace(":env", "$1").replace(":now", "$4::float8")
    attempted = new_attempts_sql(
        "c WHERE current_attempt_id IS NOT NULL",
        attempt_id="current_attempt_id",
        run_id="id",
        number="attempt_count",
        claimed="status",
        worker_id="worker_id",
        version=version,
        at=at,
    )
    return f"""WITH {_PG_FAIR_TAG.format(clock=clock)}, {BLOCKED}, gate AS (
  SELECT NOT EXISTS (SELECT 1 FROM blocked) AND NOT EXISTS (
    SELECT 1 FROM runs
    WHERE environment_id = $1 AND {_render.guard("status", RunStatus.DEQUEUED)}
      AND available_at <= $4::float8
      AND task_identifier = ANY({tasks})
      AND (locked_version IS NULL OR locked_version = {version})
  ) AS go
), c AS (
  INSERT INTO runs ({", ".join(columns)}, order_key, previous_status, attempt_count,
                    current_attempt_id, worker_id, lease_expires_at, started_at)
  VALUES ({", ".join(placeholders)},
          (SELECT next_tag FROM tag) - $5::float8 - {priority}::float8,
          CASE WHEN {go} THEN {status} END,
          CASE WHEN {go} THEN 1 ELSE 0 END,
          CASE WHEN {go} THEN {attempt} END,
          CASE WHEN {go} THEN {worker} END,
          CASE WHEN {go} THEN {lease} END,
          CASE WHEN {go} AND {claimed} = {_EXECUTING} THEN {at} END)
  RETURNING *
), tagged AS (
  INSERT INTO run_tags (run_id, tag, environment_id)
  SELECT c.id, t, c.environment_id FROM c, unnest($6::varchar[]) AS t
), attempted AS (
  {attempted}
), logged AS (
  -- one insert, in order: the history reads triggered, claimed, started
  {history.INSERT_SQL}
  SELECT c.id, e.from_status, e.to_status, CASE WHEN e.k > 0 THEN c.current_attempt_id END,
         coalesce(e.reason, {reason}), c.created_at
  FROM c
  CROSS JOIN (VALUES {history.triggered_sql(status, 0)},
                     {history.claim_steps_sql(1)})
       AS e(k, from_status, to_status, reason)
  WHERE e.k = 0 OR (c.current_attempt_id IS NOT NULL AND (e.k = 1 OR c.status = {_EXECUTING}))
  ORDER BY e.k
)
SELECT c.current_attempt_id IS NOT NULL AS handed, {COLUMNS} FROM c"""
