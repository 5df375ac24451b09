"""A run's trace: its spans, built from its records plus the span store.

The hot paths write nothing for tracing: attempts, journal entries (steps,
waits, child runs, batches) and child runs are already stored, so their spans
are derived here when a trace is read, with the ids ``_domain/traces.py``
derives (the same ids the task process exports over OTLP). Only what no record
holds (spans task code opens, integration calls) is kept in ``run_spans``.

Shape of a trace (``GET /api/v1/runs/{id}/trace``, ``api/traces.py``)::

    run                         kind "run", parent: the caller's span (traceparent)
    ├─ attempt 1                kind "attempt", ERROR with an "exception" event
    │  ├─ step.run("fetch")     kind "step", one STEP_RETRIED event per failed try
    │  └─ (user / integration spans the task opened)
    ├─ attempt 2
    │  ├─ wait.for_             kind "wait", what it waited for and until when
    │  └─ trigger_and_wait(t)   kind "child", linked to the child run's span
    └─ ...
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from triggerfish._domain.records import AttemptRecord, JournalRecord, RunRecord, WaitpointRecord
from triggerfish._domain.traces import (
    Span,
    SpanEvent,
    SpanLink,
    attempt_span_id,
    entry_span_id,
    parse_traceparent,
    run_span_id,
    trace_of,
)
from triggerfish.engine.failure_log import FailureLog
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import RunNotFound, StaleTransition
from triggerfish.store import cursors as store_cursors
from triggerfish.store import journal as journal_store
from triggerfish.store import runs as run_store
from triggerfish.store import spans as span_store
from triggerfish.store.horizon import Horizon

log = logging.getLogger("triggerfish.traces")

#: the spans the server exports; task processes export the others
SERVER_KINDS = frozenset({"run", "wait", "child", "batch"})
#: finished runs exported per pass
EXPORT_BATCH = 200
#: seconds a server has to send a batch it took before another may send it again
#: (above the OTLP exporters' own timeout and retries)
EXPORT_LEASE = 120.0

#: child runs a trace shows (a run that fanned out to more links the first ones)
MAX_CHILDREN = 500

#: journal kinds and the span kind they become
_ENTRY_KINDS = {
    "step": "step",
    "wait": "wait",
    "token.wait": "wait",
    "event.wait": "wait",
    "child": "child",
    "batch": "batch",
}
_ENTRY_NAMES = {
    "step": "step.run",
    "wait": "wait.for",
    "token.wait": "wait.for_token",
    "event.wait": "wait.for_event",
    "child": "trigger_and_wait",
    "batch": "batch_trigger_and_wait",
}
_OK_ATTEMPTS = {"COMPLETED"}
_ERROR_ATTEMPTS = {"FAILED", "TIMED_OUT", "CRASHED"}
_ERROR_RUNS = {"FAILED", "TIMED_OUT", "CRASHED", "SYSTEM_FAILURE", "EXPIRED"}


@dataclass
class Trace:
    run_id: str
    trace_id: str
    root_span_id: str
    #: the caller's span the run's span hangs off (None: the run is the trace's root)
    caller_span_id: str | None
    #: in start order; parents before their children when they start together
    spans: list[Span] = field(default_factory=list)


class Traces:
    def __init__(self, res: EngineResources, history: Horizon) -> None:
        self.res = res
        #: the horizon of the history's ids, shared with the server's other walks of it
        self.history = history

    async def trace(self, env_id: str, run_id: str) -> Trace:
        """The trace of a run of ``env_id``; ``RunNotFound`` otherwise."""
        async with self.res.db.read() as conn:
            run = await run_store.get(conn, env_id, run_id)
            if run is None:
                raise RunNotFound(run_id)
            attempts = await run_store.list_attempts(conn, run_id)
            entries = await journal_store.list_entries(conn, run_id)
            waits = await span_store.waits_of(conn, run_id)
            children = await span_store.children_of(conn, run_id, MAX_CHILDREN)
            stored = await span_store.list_spans(conn, run_id)
            context = run.trace_context
            if context is None and run.root_run_id and run.root_run_id != run.id:
                context = (await span_store.trace_contexts(conn, [run.root_run_id])).get(
                    run.root_run_id
                )
        return build_trace(run, context, attempts, entries, waits, children, stored)

    async def export_finished(self, send: Callable[[Sequence[Span]], bool]) -> int:
        """Send the server's share of each newly finished run's trace with ``send``
        (in a thread; it answers whether the collector took the spans): the
        run's span, its waits, child runs and batches (the task processes export
        its attempts, steps and task code's spans, with the same ids). Returns
        how many runs were sent.

        Finished runs are found by walking the history's primary key from a
        position the servers share (``history_cursors``), so it costs the hot
        paths nothing. With several servers on one database each batch is sent
        at least once, and once unless a server stops or stalls mid-send: a
        server leases the rows after the position (``EXPORT_LEASE`` seconds),
        sends their runs' spans, and moves the position past them only when
        the send succeeded; a failed send gives the lease back, and a server
        that stops before settling leaves a lease that expires, after which
        another server sends the batch again. The walk reads up to the
        history's horizon (``store/horizon.py``), so a run whose final status
        commits after a later row is not skipped. It starts at the horizon
        when the first exporting server starts; runs that finish while no
        exporting server runs are exported by the next one that starts.
        """
        cursor = store_cursors.EXPORT_CURSOR
        now = self.res.clock.now()
        async with self.res.db.read() as conn:  # most passes find nothing: no write lock
            state = await store_cursors.cursor_state(conn, cursor)
        if state is None:
            start = await self.history.current()
            async with self.res.db.write() as conn:
                await store_cursors.start_cursor(conn, cursor, start)
            return 0
        if state.leased_at(now):
            return 0
        # only up to the horizon: a run whose final status commits after a later
        # row is exported once it committed, not skipped
        upto = await self.history.current(at_least=state.position)
        if upto <= state.position:
            return 0
        async with self.res.db.read() as conn:
            finished = await span_store.finished_since(conn, state.position, upto, EXPORT_BATCH)
        if not finished:
            return 0
        holder = uuid.uuid4().hex
        async with self.res.db.write() as conn:
            until = now + EXPORT_LEASE
            if not await store_cursors.lease_after(
                conn, cursor, state.position, holder, until, now
            ):
                return 0  # another server is sending these
        try:
            spans = await self._server_spans([run_id for _, run_id in finished])
            sent = await asyncio.to_thread(send, spans)
        except asyncio.CancelledError:
            raise  # stopping: the lease expires, and another server sends the batch
        except Exception:
            await self._settle(holder, None)
            raise
        await self._settle(holder, finished[-1][0] if sent else None)
        if not sent:
            log.warning("the collector did not take %d finished runs' spans", len(finished))
            return 0
        return len(finished)

    async def _settle(self, holder: str, sent_upto: int | None) -> None:
        async with self.res.db.write() as conn:
            await store_cursors.settle_lease(conn, store_cursors.EXPORT_CURSOR, holder, sent_upto)

    async def _server_spans(self, run_ids: Sequence[str]) -> list[Span]:
        """The spans the server exports of these finished runs (``SERVER_KINDS``)."""
        async with self.res.db.read() as conn:
            rows = {r.id: r for r in await span_store.runs_by_ids(conn, run_ids)}
            durable = await span_store.with_journal(conn, run_ids)
            roots = [
                r.root_run_id for r in rows.values() if r.trace_context is None and r.root_run_id
            ]
            contexts = await span_store.trace_contexts(conn, roots)
        spans: list[Span] = []
        for run_id in run_ids:
            run = rows.get(run_id)
            if run is None:
                continue
            if run_id in durable:  # waits, children: the whole trace
                trace = await self.trace(run.environment_id, run_id)
            else:  # the server's share is the run's span alone: no more reads
                root = contexts.get(run.root_run_id) if run.root_run_id else None
                trace = build_trace(run, root, [], [], [], [], [])
            spans += [s for s in trace.spans if s.kind in SERVER_KINDS]
        return spans

    async def export_forever(self, send: Callable[[Sequence[Span]], bool]) -> None:
        # during a database outage every pass fails: logged sparingly
        failures = FailureLog(log, "exporting finished runs' spans")
        while True:
            try:
                exported = await self.export_finished(send)
            except Exception as exc:
                failures.failed(self.res.clock.now(), exc)
            else:
                failures.succeeded(self.res.clock.now())
                if exported >= EXPORT_BATCH:
                    continue
            await asyncio.sleep(self.res.settings.maintenance_interval)

    async def record_from_attempt(self, env_id: str, attempt_id: str, spans: Sequence[Span]) -> int:
        """Keep spans task code opened in attempt ``attempt_id`` of ``env_id`` (409 for
        any other attempt); returns how many were new."""
        async with self.res.db.write() as conn:
            attempt = await run_store.attempt_in_environment(conn, env_id, attempt_id)
            if attempt is None:
                raise StaleTransition("?", "trace", attempt_id)
            room = span_store.MAX_SPANS_PER_RUN - await span_store.count_spans(conn, attempt.run_id)
            return await span_store.insert_spans(conn, attempt.run_id, list(spans)[: max(room, 0)])

    async def record(self, env_id: str, run_id: str, spans: Sequence[Span]) -> int:
        """Keep spans a task process sent for its run (user and integration spans);
        returns how many were new. Past ``MAX_SPANS_PER_RUN`` the rest are dropped."""
        async with self.res.db.write() as conn:
            run = await run_store.get(conn, env_id, run_id)
            if run is None:
                raise RunNotFound(run_id)
            room = span_store.MAX_SPANS_PER_RUN - await span_store.count_spans(conn, run_id)
            return await span_store.insert_spans(conn, run_id, list(spans)[: max(room, 0)])


def epoch(value: datetime | None) -> float | None:
    return None if value is None else value.replace(tzinfo=UTC).timestamp()


def build_trace(
    run: RunRecord,
    root_context: str | None,
    attempts: Sequence[AttemptRecord],
    entries: Sequence[JournalRecord],
    waits: Sequence[tuple[int, int, WaitpointRecord]],
    children: Sequence[RunRecord],
    stored: Sequence[Span],
) -> Trace:
    """The spans of a run from its records (pure; see the module's docstring)."""
    ctx = parse_traceparent(run.trace_context)
    caller: str | None
    if ctx is not None:
        trace_id, caller = ctx.trace_id, ctx.span_id
    else:
        trace_id, _ = trace_of(run.id, run.root_run_id, root_context)
        # a child run without a context of its own hangs off its parent's run
        caller = run_span_id(run.parent_run_id) if run.parent_run_id else None
    root = Span(
        span_id=run_span_id(run.id),
        parent_span_id=caller,
        trace_id=trace_id,
        name=run.task_identifier,
        kind="run",
        start_time=_at(run.created_at),
        end_time=epoch(run.finished_at),
        status=_run_status(run.status),
        attributes=_compact(
            {
                "triggerfish.run.id": run.id,
                "triggerfish.task": run.task_identifier,
                "triggerfish.run.status": run.status,
                "triggerfish.queue": run.queue_name,
                "triggerfish.run.attempts": run.attempt_count,
                "triggerfish.run.parent_id": run.parent_run_id,
                "triggerfish.batch.id": run.batch_id,
            }
        ),
    )
    spans = [root]
    attempt_spans = [_attempt_span(a, trace_id, root.span_id) for a in attempts]
    spans += attempt_spans
    starts = [s.start_time for s in attempt_spans]

    def parent_at(t: float) -> str:
        i = bisect.bisect_right(starts, t) - 1
        return attempt_spans[i].span_id if i >= 0 else root.span_id

    by_seq: dict[int, list[WaitpointRecord]] = {}
    for seq, _idx, wp in waits:
        by_seq.setdefault(seq, []).append(wp)
    child_index = {c.id: c for c in children}
    awaited: set[str] = set()
    for entry in entries:
        span = _entry_span(entry, trace_id, by_seq.get(entry.seq, []), child_index, awaited)
        span.parent_span_id = parent_at(span.start_time)
        spans.append(span)
    spans += _unawaited_children(children, awaited, trace_id, parent_at)
    # stored spans nest in each other too, whichever of two starting together comes first
    known = {s.span_id for s in spans} | {s.span_id for s in stored}
    by_number = {a.number: s.span_id for a, s in zip(attempts, attempt_spans, strict=True)}
    for s in stored:
        if s.parent_span_id not in known:
            number = s.attributes.get("triggerfish.attempt.number")
            adopted = by_number.get(number) if isinstance(number, int) else None
            s.parent_span_id = adopted or parent_at(s.start_time)
        s.trace_id = trace_id
        spans.append(s)
    order = {"run": 0, "attempt": 1}
    spans.sort(key=lambda s: (s.start_time, order.get(s.kind, 2)))
    return Trace(run.id, trace_id, root.span_id, caller, spans)


def _at(value: datetime) -> float:
    stamp = epoch(value)
    assert stamp is not None
    return stamp


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _run_status(status: str) -> str:
    if status == "COMPLETED":
        return "OK"
    return "ERROR" if status in _ERROR_RUNS else "UNSET"


def _error_event(error: dict[str, Any] | None, at: float, **extra: Any) -> SpanEvent:
    error = error or {}
    return SpanEvent(
        "exception",
        at,
        _compact(
            {
                "exception.type": error.get("name"),
                "exception.message": error.get("message"),
                "exception.stacktrace": error.get("stack_trace") or error.get("stackTrace"),
                **extra,
            }
        ),
    )


def _attempt_span(a: AttemptRecord, trace_id: str, parent: str) -> Span:
    start = _at(a.started_at or a.created_at)
    end = epoch(a.finished_at)
    status = "OK" if a.status in _OK_ATTEMPTS else "ERROR" if a.status in _ERROR_ATTEMPTS else ""
    span = Span(
        span_id=attempt_span_id(a.id),
        parent_span_id=parent,
        trace_id=trace_id,
        name=f"attempt {a.number}",
        kind="attempt",
        start_time=start,
        end_time=end,
        status=status or "UNSET",
        attributes=_compact(
            {
                "triggerfish.attempt.id": a.id,
                "triggerfish.attempt.number": a.number,
                "triggerfish.attempt.status": a.status,
                "triggerfish.worker.id": a.worker_id,
                "triggerfish.version": a.version,
            }
        ),
    )
    if a.error is not None:
        span.events.append(_error_event(a.error, end or start))
    return span


def display_fields(entry: JournalRecord) -> dict[str, Any]:
    """A step's display fields (``step.run(key, fn, name=, icon=, properties=)``, kept
    on its journal entry) as span attributes."""
    display = entry.display or {}
    attrs: dict[str, Any] = {}
    if display.get("name"):
        attrs["triggerfish.step.name"] = str(display["name"])
    if display.get("icon"):
        attrs["triggerfish.step.icon"] = str(display["icon"])
    properties = display.get("properties")
    if isinstance(properties, dict):
        for key, value in properties.items():
            attrs[f"triggerfish.step.properties.{key}"] = (
                value if isinstance(value, str | int | float | bool) else str(value)
            )
    return attrs


def _tries(entry: JournalRecord, end: float) -> list[SpanEvent]:
    """``STEP_RETRIED`` events: one per failed try followed by another, each with its
    error and time from the entry's retry history (``entry.tries``); an entry
    written before that history existed gives the count and the latest error."""
    events: list[SpanEvent] = []
    retried = entry.failures - 1 if entry.status == "ERROR" else entry.failures
    history = entry.tries or []
    if history:
        for i, t in enumerate(history[:retried], start=1):
            number = int(t.get("number") or i)
            events.append(_retried(number, t.get("error"), float(t.get("at") or end)))
        return events
    for i in range(1, retried + 1):
        events.append(_retried(i, entry.error if i == retried else None, end))
    return events


def _retried(number: int, error: dict[str, Any] | None, at: float) -> SpanEvent:
    error = error or {}
    return SpanEvent(
        "STEP_RETRIED",
        at,
        _compact(
            {
                "triggerfish.step.try": number,
                "exception.type": error.get("name"),
                "exception.message": error.get("message"),
            }
        ),
    )


def _entry_span(
    entry: JournalRecord,
    trace_id: str,
    waited: list[WaitpointRecord],
    children: dict[str, RunRecord],
    awaited: set[str],
) -> Span:
    kind = _ENTRY_KINDS.get(entry.kind, "step")
    start = _at(entry.started_at)
    end = epoch(entry.finished_at)
    label = _ENTRY_NAMES.get(entry.kind, entry.kind)
    attrs: dict[str, Any] = {
        "triggerfish.journal.seq": entry.seq,
        "triggerfish.journal.kind": entry.kind,
        "triggerfish.step.key": entry.name,
        "triggerfish.step.status": entry.status,
    }
    span = Span(
        span_id=entry_span_id(entry.run_id, entry.seq),
        parent_span_id=None,
        trace_id=trace_id,
        name=f"{label}({entry.name})" if entry.name not in ("", entry.kind) else label,
        kind=kind,
        start_time=start,
        end_time=end,
        status={"OK": "OK", "ERROR": "ERROR"}.get(entry.status, "UNSET"),
        attributes=attrs,
    )
    if kind == "step":
        attrs.update(display_fields(entry))
        if "triggerfish.step.properties.integration" in attrs:
            span.kind = "integration"  # an integration's action, a journaled step
        attrs["triggerfish.step.tries"] = entry.failures + (1 if entry.status == "OK" else 0)
        span.events += _tries(entry, end or start)
        if entry.status == "ERROR":
            span.events.append(_error_event(entry.error, end or start))
        if display := attrs.get("triggerfish.step.name"):
            span.name = str(display)
    for i, wp in enumerate(waited):
        prefix = "triggerfish.wait" if len(waited) == 1 else f"triggerfish.wait.{i}"
        attrs[f"{prefix}.type"] = wp.kind
        attrs[f"{prefix}.status"] = wp.status
        if wp.kind == "DURATION" and wp.due_at is not None:
            attrs[f"{prefix}.until"] = _iso(wp.due_at)
        elif wp.due_at is not None:
            attrs[f"{prefix}.timeout_at"] = _iso(wp.due_at)
        if wp.kind == "TOKEN":
            attrs[f"{prefix}.token_id"] = wp.id
        if wp.kind == "EVENT" and wp.event_name:
            attrs[f"{prefix}.event"] = wp.event_name
        if wp.kind == "RUN" and wp.child_run_id:
            attrs[f"{prefix}.child_run_id"] = wp.child_run_id
            awaited.add(wp.child_run_id)
            child = children.get(wp.child_run_id)
            span.links.append(
                SpanLink(
                    trace_id,
                    run_span_id(wp.child_run_id),
                    _compact(
                        {
                            "triggerfish.run.id": wp.child_run_id,
                            "triggerfish.task": child.task_identifier if child else None,
                            "triggerfish.run.status": child.status if child else None,
                        }
                    ),
                )
            )
            if child is not None and child.batch_id:
                attrs["triggerfish.batch.id"] = child.batch_id
        if end is None and wp.completed_at is not None and len(waited) == 1:
            span.end_time = end = epoch(wp.completed_at)
    if entry.error is not None and kind != "step":
        span.events.append(_error_event(entry.error, end or start))
    return span


def _unawaited_children(
    children: Sequence[RunRecord], awaited: set[str], trace_id: str, parent_at: Any
) -> list[Span]:
    """A span per child run triggered without waiting (a point at its trigger), one
    per batch of such children."""
    spans: list[Span] = []
    batches: dict[str, Span] = {}
    for child in children:
        if child.id in awaited:
            continue
        at = _at(child.created_at)
        link = SpanLink(
            trace_id,
            run_span_id(child.id),
            {"triggerfish.run.id": child.id, "triggerfish.task": child.task_identifier},
        )
        if child.batch_id:
            batch = batches.get(child.batch_id)
            if batch is None:
                batch = Span(
                    span_id=run_span_id(f"batch:{child.batch_id}"),
                    parent_span_id=parent_at(at),
                    trace_id=trace_id,
                    name=f"batch_trigger({child.task_identifier})",
                    kind="batch",
                    start_time=at,
                    end_time=at,
                    attributes={
                        "triggerfish.batch.id": child.batch_id,
                        "triggerfish.batch.runs": 0,
                    },
                )
                batches[child.batch_id] = batch
                spans.append(batch)
            batch.attributes["triggerfish.batch.runs"] += 1
            batch.end_time = max(batch.end_time or at, at)
            batch.links.append(link)
            continue
        spans.append(
            Span(
                span_id=run_span_id(f"trigger:{child.id}"),
                parent_span_id=parent_at(at),
                trace_id=trace_id,
                name=f"trigger({child.task_identifier})",
                kind="child",
                start_time=at,
                end_time=at,
                status="OK",
                attributes={
                    "triggerfish.child.run_id": child.id,
                    "triggerfish.task": child.task_identifier,
                    "triggerfish.run.status": child.status,
                },
                links=[link],
            )
        )
    return spans


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
