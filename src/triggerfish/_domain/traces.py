"""The trace model: W3C trace context and the ids of a run's spans.

A run is a trace. Its spans' ids are derived from what they stand for (the
run, an attempt, a journal entry), so the server, which builds the trace from
its records, and the task process, which exports the same spans over OTLP,
name every span alike without telling each other. A caller's ``traceparent``
gives the run's trace id and its root span's parent; without one the trace id
comes from the root run of the run's tree, so a child run joins its parent's
trace.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

#: span kinds of a run's trace (``Span.kind``)
SPAN_KINDS = ("run", "attempt", "step", "wait", "child", "batch", "integration", "user")


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A parsed W3C ``traceparent``: the trace, the caller's span, its sampling flag."""

    trace_id: str
    span_id: str
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str | None) -> TraceContext | None:
    """The context of a well-formed version-00 ``traceparent``; ``None`` for anything else
    (W3C: a receiver that cannot parse the header starts a new trace)."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None or m.group(1) == _ZERO_TRACE or m.group(2) == _ZERO_SPAN:
        return None
    return TraceContext(m.group(1), m.group(2), bool(int(m.group(3), 16) & 1))


def _hex(kind: str, key: str, n: int) -> str:
    return hashlib.sha256(f"{kind}:{key}".encode()).hexdigest()[:n]


def derived_trace_id(root_run_id: str) -> str:
    """The trace id of a run tree whose root was triggered without a ``traceparent``."""
    return _hex("trace", root_run_id, 32)


def run_span_id(run_id: str) -> str:
    return _hex("run", run_id, 16)


def attempt_span_id(attempt_id: str) -> str:
    return _hex("attempt", attempt_id, 16)


def entry_span_id(run_id: str, seq: int) -> str:
    """The span of a journal entry (a step, a wait, a child run, a batch)."""
    return _hex("entry", f"{run_id}:{seq}", 16)


def trace_of(run_id: str, root_run_id: str | None, context: str | None) -> tuple[str, str | None]:
    """The trace id of a run and its run span's parent span (the caller's span)."""
    ctx = parse_traceparent(context)
    if ctx is not None:
        return ctx.trace_id, ctx.span_id
    return derived_trace_id(root_run_id or run_id), None


@dataclass(slots=True)
class SpanEvent:
    name: str
    time: float
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class SpanLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Span:
    """One span of a run's trace; times are epoch seconds (``end_time`` None: open)."""

    span_id: str
    parent_span_id: str | None
    trace_id: str
    name: str
    kind: str
    start_time: float
    end_time: float | None
    status: str = "UNSET"  # UNSET | OK | ERROR
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    links: list[SpanLink] = field(default_factory=list)
