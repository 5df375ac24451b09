"""A claim in one statement, for the common case: an environment on PostgreSQL
with no concurrency limit and no constrained queue.

A claim's general path (``engine.dequeue``) reads the environment's limits,
walks the candidates, locks what it must, then writes the runs, attempts and
history rows: six or seven round trips through SQLAlchemy and a commit. When
nothing constrains the environment, none of the reads can refuse a run, so
the whole claim is data-modifying CTEs of one statement, prepared once per
connection by asyncpg and sent straight to the driver. The statement checks
for itself that nothing constrains the environment (in the same snapshot as
its candidates) and claims nothing when something does; the caller then takes
the general path.

A busy worker's exchange, its successes reported with the claim of its next
runs, is one statement too (``claim_unconstrained_after``): the completions are
data-modifying CTEs of the claim's statement.

``SKIP LOCKED`` keeps concurrent claimers on disjoint runs; the rows it locks
are QUEUED in their newest version and stay so until the claim commits.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store.db import Database, fetch_on_driver, stored_row
from triggerfish.store.tables import runs

#: a claimed run: every column of ``runs``, by name, as SQLAlchemy reads them
ClaimedRun = collections.namedtuple("ClaimedRun", [c.name for c in runs.c])  # type: ignore[misc]


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


async def claim_unconstrained(fetch: Fetch, claim: SimpleClaim) -> list[Any] | None:
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
    return [ClaimedRun(*row[1:]) for row in rows if row["id"] is not None]


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
) -> tuple[set[str], list[Any] | None]:
    """Record ``successes`` and claim, in one statement of its own: the common
    exchange of a busy worker (PostgreSQL only).

    Returns the runs it completed (a stale report's run, or one a parent waits
    on, is not among them: record those by the general path) and the claimed
    runs, or None when something constrains the environment (the successes were
    recorded all the same; claim by the general path).
    """
    if len(set(successes.run_ids)) != len(successes.run_ids):
        raise ValueError("one success per run: a run named twice is for the general path")
    outputs = [stored_row(runs, db.engine.dialect, ("output",), {"output": o})[0]
               for o in successes.outputs]  # JSON text, as SQLAlchemy stores it
    params = [*_params(claim), list(successes.run_ids), list(successes.attempt_ids), outputs]
    rows = await db.fetch_alone(_WITH_SUCCESSES, params)
    done = set(rows[0]["done"])
    if rows[0]["blocked"]:
        return done, None
    return done, [ClaimedRun(*row[2:]) for row in rows if row["id"] is not None]


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

#: every column of ``runs`` as the table lists them, from the relation ``c``
COLUMNS = ", ".join(f"c.{c.name}" for c in runs.c)

_CLAIM = f"""{BLOCKED}, picked AS (
  SELECT id, order_key FROM runs
  WHERE environment_id = $1 AND status = 'QUEUED' AND available_at <= $2::float8
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
    status = CASE WHEN array_position(o.ids, r.id) <= $7 THEN 'EXECUTING' ELSE 'DEQUEUED' END,
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
  INSERT INTO attempts (id, run_id, number, status, worker_id, version, created_at, started_at)
  SELECT current_attempt_id, id, attempt_count,
         CASE WHEN status = 'EXECUTING' THEN 'EXECUTING' ELSE 'PENDING' END,
         $8, $4, $10::timestamp, CASE WHEN status = 'EXECUTING' THEN $10::timestamp END
  FROM claimed
), logged AS (
  INSERT INTO run_events (run_id, from_status, to_status, attempt_id, reason, at)
  SELECT claimed.id, e.from_status, e.to_status, claimed.current_attempt_id,
         coalesce(e.reason, $11), $10::timestamp
  FROM claimed
  CROSS JOIN (VALUES (1, 'QUEUED', 'DEQUEUED', NULL),
                     (2, 'DEQUEUED', 'EXECUTING', 'attempt started'))
       AS e(k, from_status, to_status, reason)
  WHERE e.k = 1 OR claimed.status = 'EXECUTING'
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
_SUCCESSES = """done AS (
  UPDATE runs AS r SET
    previous_status = r.status,
    status = 'COMPLETED',
    updated_at = $10::timestamp,
    finished_at = $10::timestamp,
    lease_expires_at = NULL,
    output = (($14::text[])[array_position($12::varchar[], r.id)])::json
  WHERE r.id = ANY($12::varchar[])
    AND r.current_attempt_id = ($13::varchar[])[array_position($12::varchar[], r.id)]
    AND r.environment_id = $1 AND r.status = 'EXECUTING' AND r.parent_run_id IS NULL
  RETURNING r.id, r.current_attempt_id, r.previous_status
), done_attempts AS (
  UPDATE attempts SET status = 'COMPLETED', finished_at = $10::timestamp
  WHERE id IN (SELECT current_attempt_id FROM done)
), done_logged AS (
  INSERT INTO run_events (run_id, from_status, to_status, attempt_id, reason, at)
  SELECT id, previous_status, 'COMPLETED', current_attempt_id, 'attempt succeeded',
         $10::timestamp
  FROM done ORDER BY array_position($12::varchar[], id)
)"""

_WITH_SUCCESSES = f"""WITH {_CLAIM}, {_SUCCESSES}
SELECT EXISTS (SELECT 1 FROM blocked) AS blocked,
       (SELECT coalesce(array_agg(id), '{{}}') FROM done) AS done, {COLUMNS}
FROM (SELECT 1) AS one LEFT JOIN claimed AS c ON true
ORDER BY c.claim_n
"""
