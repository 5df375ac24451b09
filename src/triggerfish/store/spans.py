"""Queries of a run's trace: the span store, and the waits and children a trace shows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import RunRecord, WaitpointRecord
from triggerfish._domain.states import FINAL
from triggerfish._domain.traces import Span, SpanEvent
from triggerfish.store.runs.queries import run_from_row
from triggerfish.store.tables import (
    run_events,
    run_journal,
    run_spans,
    runs,
    waitpoint_waiters,
    waitpoints,
)
from triggerfish.store.waitpoints import waitpoint_from_row

#: stored spans one run keeps at most (task code opening spans in a loop)
MAX_SPANS_PER_RUN = 5000


async def insert_spans(conn: AsyncConnection, run_id: str, spans: Sequence[Span]) -> int:
    """Store spans of a run, skipping ids it already has (an exporter's retry);
    returns how many were new."""
    if not spans:
        return 0
    have = set(
        (
            await conn.execute(
                select(run_spans.c.span_id).where(
                    run_spans.c.run_id == run_id,
                    run_spans.c.span_id.in_([s.span_id for s in spans]),
                )
            )
        ).scalars()
    )
    rows: list[dict[str, Any]] = []
    for s in spans:
        if s.span_id in have:
            continue
        have.add(s.span_id)
        rows.append(
            {
                "run_id": run_id,
                "span_id": s.span_id,
                "trace_id": s.trace_id,
                "parent_span_id": s.parent_span_id,
                "name": s.name,
                "kind": s.kind,
                "attempt_number": s.attributes.get("triggerfish.attempt.number"),
                "start_time": s.start_time,
                "end_time": s.end_time,
                "status": s.status,
                "attributes": s.attributes,
                "events": [
                    {"name": e.name, "time": e.time, "attributes": e.attributes} for e in s.events
                ],
            }
        )
    if rows:
        await conn.execute(run_spans.insert(), rows)
    return len(rows)


async def count_spans(conn: AsyncConnection, run_id: str) -> int:
    stmt = select(func.count()).select_from(run_spans).where(run_spans.c.run_id == run_id)
    return int((await conn.execute(stmt)).scalar() or 0)


async def list_spans(conn: AsyncConnection, run_id: str) -> list[Span]:
    rows = (await conn.execute(_SPANS, {"run": run_id})).all()
    return [
        Span(
            span_id=r.span_id,
            parent_span_id=r.parent_span_id,
            trace_id=r.trace_id,
            name=r.name,
            kind=r.kind,
            start_time=r.start_time,
            end_time=r.end_time,
            status=r.status,
            attributes=dict(r.attributes or {}),
            events=[
                SpanEvent(e["name"], float(e["time"]), dict(e.get("attributes") or {}))
                for e in (r.events or [])
            ],
        )
        for r in rows
    ]


_SPANS = (
    select(run_spans)
    .where(run_spans.c.run_id == bindparam("run"))
    .order_by(run_spans.c.start_time, run_spans.c.span_id)
)


async def delete_for_runs(conn: AsyncConnection, run_ids: Sequence[str]) -> None:
    """Drop the spans of runs being deleted (the retention sweep calls this with
    each batch of runs it removes)."""
    if run_ids:
        await conn.execute(delete(run_spans).where(run_spans.c.run_id.in_(list(run_ids))))


async def waits_of(conn: AsyncConnection, run_id: str) -> list[tuple[int, int, WaitpointRecord]]:
    """(journal position, index in the wait, waitpoint) of every wait of a run."""
    rows = (await conn.execute(_WAITS, {"run": run_id})).all()
    return [(r.seq, r.idx, waitpoint_from_row(r)) for r in rows]


_WAITS = (
    select(waitpoints, waitpoint_waiters.c.seq, waitpoint_waiters.c.idx)
    .join(waitpoint_waiters, waitpoint_waiters.c.waitpoint_id == waitpoints.c.id)
    .where(waitpoint_waiters.c.run_id == bindparam("run"))
    .order_by(waitpoint_waiters.c.seq, waitpoint_waiters.c.idx)
)


async def children_of(conn: AsyncConnection, run_id: str, limit: int) -> list[RunRecord]:
    """The runs a run triggered (with or without waiting on them), oldest first."""
    stmt = select(runs).where(runs.c.parent_run_id == run_id).order_by(runs.c.id).limit(limit)
    return [run_from_row(r) for r in (await conn.execute(stmt)).all()]


async def trace_contexts(conn: AsyncConnection, run_ids: Sequence[str]) -> dict[str, str | None]:
    """The caller's ``traceparent`` of each run (for a run tree's root)."""
    if not run_ids:
        return {}
    stmt = select(runs.c.id, runs.c.trace_context).where(runs.c.id.in_(list(run_ids)))
    return {r.id: r.trace_context for r in (await conn.execute(stmt)).all()}


_FINAL_NAMES = sorted(s.value for s in FINAL)


async def last_event_id(conn: AsyncConnection) -> int:
    """The newest history row's id (where an exporter starts watching)."""
    return int((await conn.execute(select(func.max(run_events.c.id)))).scalar() or 0)


async def finished_since(conn: AsyncConnection, after_id: int, limit: int) -> list[tuple[int, str]]:
    """(history id, run id) of runs that reached a final status after history row
    ``after_id``, oldest first: a walk of the history's primary key."""
    stmt = (
        select(run_events.c.id, run_events.c.run_id)
        .where(run_events.c.id > after_id, run_events.c.to_status.in_(_FINAL_NAMES))
        .order_by(run_events.c.id)
        .limit(limit)
    )
    return [(int(r.id), str(r.run_id)) for r in (await conn.execute(stmt)).all()]


async def runs_by_ids(conn: AsyncConnection, run_ids: Sequence[str]) -> list[RunRecord]:
    if not run_ids:
        return []
    stmt = select(runs).where(runs.c.id.in_(list(run_ids)))
    return [run_from_row(r) for r in (await conn.execute(stmt)).all()]


async def with_journal(conn: AsyncConnection, run_ids: Sequence[str]) -> set[str]:
    """Which of these runs have journal entries (steps, waits, children)."""
    if not run_ids:
        return set()
    stmt = select(run_journal.c.run_id).where(
        run_journal.c.run_id.in_(list(run_ids)), run_journal.c.seq == 0
    )
    return {r[0] for r in (await conn.execute(stmt)).all()}
