"""A run's history: the ``run_events`` row each status change writes.

Each kind of row is defined once here and written either through SQLAlchemy
(``record``) or by a raw statement's insert rendered from the same definition
(``INSERT_SQL`` with ``triggered_sql`` / ``claim_steps_sql``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import RunEventRecord
from triggerfish._domain.states import RunStatus
from triggerfish.store.runs import _render
from triggerfish.store.tables import run_events

#: the reason of a new run's first row
TRIGGERED = "triggered"
TRIGGERED_IN_A_BATCH = "triggered in a batch"
#: the reason of the step a claim that starts its run at once adds
STARTED = "attempt started"
SUCCEEDED = "attempt succeeded"

#: a claim's rows: it moves a run QUEUED → DEQUEUED (reason: who claimed it), and
#: when the worker starts it at once, DEQUEUED → EXECUTING as well
CLAIM_STEPS: tuple[tuple[RunStatus, RunStatus, str | None], ...] = (
    (RunStatus.QUEUED, RunStatus.DEQUEUED, None),
    (RunStatus.DEQUEUED, RunStatus.EXECUTING, STARTED),
)

COLUMNS = ("run_id", "from_status", "to_status", "attempt_id", "reason", "at")
#: the head of a raw statement's history insert (a ``SELECT`` of ``COLUMNS`` follows)
INSERT_SQL = f"INSERT INTO run_events ({', '.join(COLUMNS)})"

# built once: building a statement and its cache key costs more than running it
_INSERT = insert(run_events)


def row(
    run_id: str,
    from_status: str | None,
    to_status: str,
    *,
    at: datetime,
    attempt_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "from_status": from_status,
        "to_status": to_status,
        "attempt_id": attempt_id,
        "reason": reason,
        "at": at,
    }


def triggered(run_id: str, status: str, at: datetime, reason: str = TRIGGERED) -> dict[str, Any]:
    """A new run's first row: from nothing to its first status."""
    return row(run_id, None, status, at=at, reason=reason)


def claimed(
    run_id: str, attempt_id: str, worker_id: str, *, start: bool, at: datetime
) -> list[dict[str, Any]]:
    """The rows of a run's claim (``CLAIM_STEPS``)."""
    steps = CLAIM_STEPS if start else CLAIM_STEPS[:1]
    return [
        row(run_id, frm, to, at=at, attempt_id=attempt_id, reason=why or claim_reason(worker_id))
        for frm, to, why in steps
    ]


def claim_reason(worker_id: str) -> str:
    return f"claimed by {worker_id}"


async def record(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(_INSERT, rows)


def triggered_insert_sql(run_id: str, status: str, at: str, source: str = "") -> str:
    """``triggered`` as a raw statement: the row of each run of ``source`` (or of
    none), each argument an SQL expression."""
    select = f"SELECT {run_id}, NULL, {status}, NULL, {_render.text(TRIGGERED)}, {at}"
    return f"{INSERT_SQL}\n{select}" + (f" FROM {source}" if source else "")


def triggered_sql(status: str, k: int = 0) -> str:
    """``triggered`` as a ``VALUES`` item of (order, from, to, reason), for a
    statement that writes it with its claim's rows (``claim_steps_sql``)."""
    return f"({k}, NULL, {status}, {_render.text(TRIGGERED)})"


def claim_steps_sql(first_k: int = 1) -> str:
    """``CLAIM_STEPS`` as ``VALUES`` items of (order, from, to, reason); a NULL
    reason stands for the claim's own (who claimed it)."""
    items = []
    for k, (frm, to, why) in enumerate(CLAIM_STEPS, start=first_k):
        reason = "NULL" if why is None else _render.text(why)
        items.append(f"({k}, {_render.status(frm)}, {_render.status(to)}, {reason})")
    return ",\n                     ".join(items)


def event_from_row(row: Row[Any]) -> RunEventRecord:
    """The record of a row holding every column of ``run_events``, in order."""
    return RunEventRecord(*row)


async def list_events(conn: AsyncConnection, run_id: str) -> list[RunEventRecord]:
    stmt = select(run_events).where(run_events.c.run_id == run_id).order_by(run_events.c.id)
    return [event_from_row(r) for r in (await conn.execute(stmt)).all()]
