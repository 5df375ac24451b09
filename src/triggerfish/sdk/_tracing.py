"""The spans of a task process: its attempt, each ``step.run`` it executes, and the
spans task code opens.

The attempt and its steps get the ids ``_domain/traces.py`` derives, under the
run's span (which the server exports, with the run's waits and child runs, once
the run finishes), so one trace holds them all. When this process exports
(``_otel.configure``) they are real spans; otherwise only their context is set
(no span is made), which is all task code's spans need to nest under them. A
replayed step makes no span: its span was exported by the attempt that ran it.

Task code's own spans (the normal OpenTelemetry API) nest under the step or
attempt that is current. :class:`RunSpans`, a span processor on this process's
tracer provider, hands each one that ends in the running attempt's trace to a
sink (the worker, which sends them to the server's span store), so
``GET /api/v1/runs/{id}/trace`` shows them too; exported over OTLP, they reach
the collector as well.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from triggerfish import _otel
from triggerfish._domain.attempts import AttemptOutcome, Failed, Job, Succeeded
from triggerfish._domain.traces import attempt_span_id, entry_span_id, run_span_id

#: what a stored span may hold (the server refuses more: ``api/worker_api.py``)
MAX_NAME = 256
MAX_ATTRIBUTES = 128
MAX_EVENTS = 128
MAX_VALUE_CHARS = 4096


def enabled(job: Job) -> bool:
    """Whether the attempt and its steps are real, exported spans."""
    return bool(job.trace_id) and _otel.configured()


def collecting(job: Job) -> bool:
    """Whether task code's spans in this attempt go to the run's stored trace."""
    return bool(job.trace_id) and COLLECTOR.sink is not None


def local_context(trace_id: str, span_id: str) -> NonRecordingSpan:
    """A span that only carries the context of ``span_id`` (not recorded here)."""
    sampled = TraceFlags(TraceFlags.SAMPLED)
    return NonRecordingSpan(SpanContext(int(trace_id, 16), int(span_id, 16), False, sampled))


@contextlib.contextmanager
def attempt_context(job: Job) -> Iterator[None]:
    """The attempt's span as the current context, without making a span (this
    process does not export), while task code's spans are collected."""
    COLLECTOR.attempt(job.trace_id, job.attempt_number)
    try:
        with trace.use_span(local_context(job.trace_id, attempt_span_id(job.attempt_id))):
            yield
    finally:
        COLLECTOR.attempt(None, 0)


@contextlib.contextmanager
def attempt_span(job: Job, task_id: str) -> Iterator[_otel.Span]:
    """The attempt's span, current while the task body runs."""
    parent = _otel.remote_parent(job.trace_id, run_span_id(job.run_id))
    attributes = {
        "triggerfish.run.id": job.run_id,
        "triggerfish.attempt.id": job.attempt_id,
        "triggerfish.attempt.number": job.attempt_number,
        "triggerfish.task": task_id,
        "triggerfish.environment": job.environment.slug,
        _otel.RUN_SPAN: "attempt",
    }
    span = _otel.start_span_with_id(
        f"attempt {job.attempt_number}",
        attempt_span_id(job.attempt_id),
        context=parent,
        attributes=attributes,
    )
    COLLECTOR.attempt(job.trace_id, job.attempt_number)
    try:
        with trace.use_span(span, end_on_exit=True, record_exception=False):
            yield span
    finally:
        COLLECTOR.attempt(None, 0)


def end_attempt(span: _otel.Span, outcome: AttemptOutcome) -> None:
    match outcome:
        case Succeeded():
            span.set_status(Status(StatusCode.OK))
        case Failed(error):
            span.add_event(
                "exception",
                {
                    "exception.type": error.name,
                    "exception.message": error.message,
                    "exception.stacktrace": error.stack_trace,
                },
            )
            span.set_status(Status(StatusCode.ERROR, error.message))
            span.set_attribute("triggerfish.attempt.failure", error.kind)
        case _:
            span.set_attribute("triggerfish.attempt.suspended", True)


class StepSpan:
    """A step's span while it executes: a ``STEP_RETRIED`` event per failed try.
    ``record`` False (this process does not export): only the step's context."""

    def __init__(
        self,
        run_id: str,
        seq: int,
        key: str,
        display: dict[str, Any],
        *,
        record: bool = True,
        trace_id: str = "",
    ) -> None:
        span_id = entry_span_id(run_id, seq)
        self.span: _otel.Span
        if not record:
            self.span = local_context(trace_id, span_id)
        else:
            attributes: dict[str, Any] = {
                "triggerfish.step.key": key,
                "triggerfish.journal.seq": seq,
                _otel.RUN_SPAN: "step",
                **display,
            }
            name = str(display.get("triggerfish.step.name") or f"step.run({key})")
            self.span = _otel.start_span_with_id(name, span_id, attributes=attributes)
        self._use = trace.use_span(self.span, end_on_exit=False, record_exception=False)
        self._use.__enter__()

    def retried(self, number: int, exc: BaseException) -> None:
        self.span.add_event(
            "STEP_RETRIED",
            {
                "triggerfish.step.try": number,
                "exception.type": type(exc).__name__,
                "exception.message": str(exc),
            },
        )

    def end(self, tries: int, exc: BaseException | None = None) -> None:
        self.span.set_attribute("triggerfish.step.tries", tries)
        if exc is None:
            self.span.set_status(Status(StatusCode.OK))
        else:
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, str(exc)))
        self._use.__exit__(None, None, None)
        self.span.end()


def child_traceparent(trace_id: str, run_id: str, seq: int) -> str:
    """The context a child run of ``trigger_and_wait`` is triggered with: its run's
    span hangs off the parent's child-run entry."""
    return f"00-{trace_id}-{entry_span_id(run_id, seq)}-01"


# -- task code's spans, for the run's stored trace ---------------------------------------

Sink = Callable[[dict[str, Any]], None]


class RunSpans:
    """A span processor: each span task code ends in the running attempt's trace,
    as the span store keeps it (``kind`` "user"), to :attr:`sink`.

    Triggerfish's own spans (the attempt, its steps) are left out: the server
    builds those from its records.
    """

    def __init__(self) -> None:
        self.sink: Sink | None = None
        self._trace_id = 0
        self._attempt_number = 0
        self._lock = threading.Lock()

    def attempt(self, trace_id: str | None, number: int) -> None:
        with self._lock:
            self._trace_id = int(trace_id, 16) if trace_id else 0
            self._attempt_number = number

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: Any) -> None:
        sink, trace_id, number = self.sink, self._trace_id, self._attempt_number
        ctx = span.context
        if sink is None or ctx is None or not trace_id or ctx.trace_id != trace_id:
            return
        scope = span.instrumentation_scope
        if scope is not None and scope.name == "triggerfish":
            return
        sink(stored_span(span, number))

    def _on_ending(self, span: Any) -> None:
        pass

    def shutdown(self) -> None:
        self.sink = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


COLLECTOR = RunSpans()


def collect_into(sink: Sink, service_name: str) -> None:
    """Send task code's spans to ``sink``: on the tracer provider this process has
    (the exporting one, or one the project installed), else on a new one that
    exports nothing."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = _otel.local_provider(service_name)
        trace.set_tracer_provider(provider)
        _otel.context_only()
    if COLLECTOR.sink is None:
        provider.add_span_processor(COLLECTOR)  # type: ignore[arg-type]
    COLLECTOR.sink = sink


def _value(value: Any) -> Any:
    if isinstance(value, str):
        return value[:MAX_VALUE_CHARS]
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, Sequence):
        return [_value(v) for v in value][:MAX_ATTRIBUTES]
    return str(value)[:MAX_VALUE_CHARS]


def _attributes(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    items = list((attrs or {}).items())[:MAX_ATTRIBUTES]
    return {str(k)[:MAX_NAME]: _value(v) for k, v in items}


def stored_span(span: Any, attempt_number: int) -> dict[str, Any]:
    """A finished SDK span as the worker sends it to the span store."""
    parent = span.parent
    code = span.status.status_code
    attributes = _attributes(span.attributes)
    attributes["triggerfish.attempt.number"] = attempt_number
    return {
        "span_id": format(span.context.span_id, "016x"),
        "parent_span_id": format(parent.span_id, "016x") if parent is not None else None,
        "name": str(span.name)[:MAX_NAME],
        "start_time": span.start_time / 1e9,
        "end_time": (span.end_time or span.start_time) / 1e9,
        "status": "ERROR"
        if code == StatusCode.ERROR
        else "OK"
        if code == StatusCode.OK
        else "UNSET",
        "attributes": attributes,
        "events": [
            {
                "name": str(e.name)[:MAX_NAME],
                "time": e.timestamp / 1e9,
                "attributes": _attributes(e.attributes),
            }
            for e in list(span.events)[:MAX_EVENTS]
        ],
    }
