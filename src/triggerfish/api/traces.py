"""``GET /api/v1/runs/{id}/trace``: a run's trace, the span tree the dashboard draws.

The JSON shape (documented in the OpenAPI document by the models below)::

    {"runId": "run_…", "traceId": "<32 hex>", "rootSpanId": "<16 hex>",
     "callerSpanId": "<16 hex>" | null,
     "spans": [{"spanId", "parentSpanId", "traceId", "name", "kind", "startTime",
                "endTime", "durationMs", "status", "attributes", "events", "links"}]}

``spans`` are in start order; build the tree from ``parentSpanId`` (the run's
span has the caller's span, its parent run's span, or null as parent).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from triggerfish._domain.times import iso_from_epoch
from triggerfish._domain.traces import Span
from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine.traces import Trace

router = APIRouter(tags=["runs"], route_class=StrictJsonRoute)

SpanKind = Literal["run", "attempt", "step", "wait", "child", "batch", "integration", "user"]


class SpanEventOut(BaseModel):
    """Something that happened at a point of a span: ``exception`` (an error, with
    ``exception.type``/``exception.message``/``exception.stacktrace``) or
    ``STEP_RETRIED`` (a failed try of a step, ``triggerfish.step.try`` its number)."""

    name: str
    time: str = Field(description="ISO 8601, UTC, milliseconds")
    attributes: dict[str, Any]


class SpanLinkOut(BaseModel):
    """A span elsewhere: a child run's span (``triggerfish.run.id`` names the run)."""

    traceId: str
    spanId: str
    attributes: dict[str, Any]


class SpanOut(BaseModel):
    """One span. ``kind``: ``run`` (the run), ``attempt``, ``step`` (``step.run``: the
    key in ``triggerfish.step.key``, display fields in ``triggerfish.step.name``,
    ``.icon``, ``.properties.*``, tries in ``triggerfish.step.tries``), ``wait`` (what:
    ``triggerfish.wait.type`` DURATION/TOKEN/EVENT, until when:
    ``triggerfish.wait.until`` or ``.timeout_at``), ``child`` (a child run, linked),
    ``batch``, ``integration``, ``user`` (spans task code opened). ``endTime`` null:
    still open."""

    spanId: str
    parentSpanId: str | None
    traceId: str
    name: str
    kind: SpanKind
    startTime: str
    endTime: str | None
    durationMs: float | None
    status: Literal["UNSET", "OK", "ERROR"]
    attributes: dict[str, Any]
    events: list[SpanEventOut]
    links: list[SpanLinkOut]


class TraceOut(BaseModel):
    runId: str
    traceId: str
    rootSpanId: str = Field(description="the run's own span")
    callerSpanId: str | None = Field(
        description="the span the run's span hangs off: the caller's (traceparent) or the "
        "parent run's; null when the run starts its trace"
    )
    spans: list[SpanOut]


def span_object(s: Span) -> dict[str, Any]:
    return {
        "spanId": s.span_id,
        "parentSpanId": s.parent_span_id,
        "traceId": s.trace_id,
        "name": s.name,
        "kind": s.kind,
        "startTime": iso_from_epoch(s.start_time),
        "endTime": None if s.end_time is None else iso_from_epoch(s.end_time),
        "durationMs": (
            None if s.end_time is None else round((s.end_time - s.start_time) * 1000, 3)
        ),
        "status": s.status,
        "attributes": s.attributes,
        "events": [
            {"name": e.name, "time": iso_from_epoch(e.time), "attributes": e.attributes}
            for e in s.events
        ],
        "links": [
            {"traceId": lk.trace_id, "spanId": lk.span_id, "attributes": lk.attributes}
            for lk in s.links
        ],
    }


def trace_object(t: Trace) -> dict[str, Any]:
    return {
        "runId": t.run_id,
        "traceId": t.trace_id,
        "rootSpanId": t.root_span_id,
        "callerSpanId": t.caller_span_id,
        "spans": [span_object(s) for s in t.spans],
    }


@router.get("/api/v1/runs/{run_id}/trace", response_model=TraceOut)
async def run_trace(run_id: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """The run's trace: its attempts, steps (each failed try a ``STEP_RETRIED``
    event), waits, child runs, batches and the spans its task code opened."""
    return trace_object(await engine.traces.trace(env.id, run_id))
