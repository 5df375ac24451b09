"""OpenTelemetry in Triggerfish: one tracer, W3C trace context, OTLP export.

Every process (a caller using the SDK, the server, the worker and its task
processes) traces through the global OpenTelemetry tracer provider.
:func:`configure` installs one that exports over OTLP when the standard
variables ask for it (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_EXPORTER_OTLP_PROTOCOL``
``http/protobuf`` (default) or ``grpc``), with the exporters of the ``otel``
extra. An app that installs its own provider keeps it: Triggerfish's spans go
there.

Sampling (:class:`RunFirstSampler`): the spans of a run's trace (the run, its
attempts, steps, waits and child runs, and every span task code opens inside an
attempt) are always kept; the servers' own work (``triggerfish.dequeue``, one
span per database statement) is internal and kept at
``TRIGGERFISH_TRACES_INTERNAL_SAMPLE_RATE`` (0 to 1, default 0.05), decided
once per trace so a kept dequeue keeps its statements.

The spans of a run have ids derived from what they stand for
(``_domain/traces.py``); :func:`span_with_id` opens a span with such an id, so
the spans a task process exports and those the server exports (the run, its
waits and child runs) join into one tree without the two telling each other.
That needs this module's id generator, i.e. a provider :func:`configure`
installed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from triggerfish._domain.traces import Span as DomainSpan
from triggerfish._version import __version__

__all__ = [
    "INTERNAL_RATE_ENV",
    "RUN_SPAN",
    "Span",
    "SpanKind",
    "active",
    "configure",
    "configured",
    "current_ids",
    "current_traceparent",
    "flush",
    "internal_rate",
    "internal_span",
    "producer_span",
    "remote_parent",
    "send_run_spans",
    "span_with_id",
]

_log = logging.getLogger("triggerfish.otel")
_PROPAGATOR = TraceContextTextMapPropagator()
_next_span_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "triggerfish_next_span_id", default=None
)
_next_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "triggerfish_next_trace_id", default=None
)
_configured = False
_context_only = False
#: the server's sender of finished runs' spans (:func:`configure` makes it)
_run_spans: RunSpanSender | None = None

#: the variable that sets how many internal spans are kept (0 to 1)
INTERNAL_RATE_ENV = "TRIGGERFISH_TRACES_INTERNAL_SAMPLE_RATE"
DEFAULT_INTERNAL_RATE = 0.05
#: the attribute that marks a span of a run's trace (its value: the span's kind)
RUN_SPAN = "triggerfish.span.kind"
#: the attribute that marks a span of the servers' own work
INTERNAL_SPAN = "triggerfish.internal"


def internal_rate() -> float:
    """``TRIGGERFISH_TRACES_INTERNAL_SAMPLE_RATE`` (default 0.05); ``ValueError``
    naming the variable for anything but a number from 0 to 1."""
    raw = os.environ.get(INTERNAL_RATE_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERNAL_RATE
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{INTERNAL_RATE_ENV}: a number from 0 to 1, not {raw!r}")
    return rate


def _sampler(rate: float) -> Any:
    """:class:`RunFirstSampler` (the SDK is imported only by a process that exports)."""
    from opentelemetry.sdk.trace.sampling import (
        Decision,
        ParentBased,
        Sampler,
        SamplingResult,
        TraceIdRatioBased,
    )

    class RunFirstSampler(Sampler):
        """Spans of a run's trace always; anything else as its parent was sampled,
        a trace of the servers' own work at ``rate``."""

        def __init__(self) -> None:
            self._internal = ParentBased(TraceIdRatioBased(rate))

        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if attributes and RUN_SPAN in attributes:
                return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, trace_state)
            return self._internal.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"RunFirstSampler{{internal={rate}}}"

    return RunFirstSampler()


def derived_ids() -> Any:
    """An id generator: random ids, except for the span :func:`span_with_id` opens
    (the SDK is imported only by a process that exports)."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class DerivedIds(IdGenerator):
        def generate_span_id(self) -> int:
            wanted = _next_span_id.get()
            return wanted if wanted is not None else random.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            wanted = _next_trace_id.get()
            return wanted if wanted is not None else random.getrandbits(128) or 1

    return DerivedIds()


def configure(service_name: str) -> bool:
    """Install an exporting tracer provider if the OTLP variables ask for one.

    Returns whether spans are exported. Without an endpoint, or with
    ``OTEL_SDK_DISABLED=true``, nothing is installed and tracing costs nothing.
    """
    global _configured
    if _configured:
        return True
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    rate = internal_rate()  # a bad value fails the process even without an endpoint
    if not endpoint:
        return False
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    try:
        exporter = _exporter(protocol)
    except ImportError:
        _log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporters are not installed: "
            "pip install 'triggerfish[otel]'"
        )
        return False
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    global _run_spans
    provider = TracerProvider(
        resource=_resource(service_name), id_generator=derived_ids(), sampler=_sampler(rate)
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _run_spans = RunSpanSender(_exporter(protocol), service_name)
    _configured = True
    return True


def _resource(service_name: str) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    # Resource.create also reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    return Resource.create(attrs)


def _exporter(protocol: str) -> Any:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    if protocol not in ("http/protobuf", "http"):
        _log.warning("OTLP protocol %r is not supported; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def local_provider(service_name: str) -> Any:
    """An SDK tracer provider that exports nothing (its span processors decide what
    becomes of spans), with this module's ids and sampler."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}),
        id_generator=derived_ids(),
        sampler=_sampler(internal_rate()),
    )


def configured() -> bool:
    """Whether :func:`configure` installed an exporting provider in this process."""
    return _configured


def active() -> bool:
    """Whether a span opened now would be recorded or carry a context (cheap: the
    hot paths ask this before doing any tracing work). In a task process that
    exports nothing (:func:`context_only`), never: a trigger's span there would
    be kept nowhere, and a child run hangs off its parent's run instead."""
    if _context_only:
        return _configured
    return _configured or trace.get_current_span().get_span_context().is_valid


def context_only() -> None:
    """Say this process's provider exports nothing (``local_provider``): the run's
    context is set only for the spans task code opens."""
    global _context_only
    _context_only = True


def flush(timeout_ms: int = 5000) -> None:
    """Export what is buffered (before a process stops)."""
    provider = trace.get_tracer_provider()
    force = getattr(provider, "force_flush", None)
    if force is not None:
        force(timeout_ms)


def tracer() -> trace.Tracer:
    return trace.get_tracer("triggerfish", __version__)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if there is one."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span in hex, for log lines; None outside one."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@contextlib.contextmanager
def producer_span(name: str, attributes: Mapping[str, Any]) -> Iterator[str | None]:
    """A span around sending a trigger; yields the ``traceparent`` to send with it."""
    with tracer().start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
        yield current_traceparent()


@contextlib.contextmanager
def internal_span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A span of the servers' own work (sampled at :func:`internal_rate`), current
    while the block runs; a no-op span unless this process exports."""
    if not _configured:
        yield trace.INVALID_SPAN
        return
    attrs = {INTERNAL_SPAN: True, **(attributes or {})}
    with tracer().start_as_current_span(name, kind=SpanKind.INTERNAL, attributes=attrs) as span:
        yield span


def start_internal_span(name: str, attributes: Mapping[str, Any]) -> Span:
    """Start a span of the servers' own work that is not made current (a database
    statement); the caller ends it."""
    attrs = {INTERNAL_SPAN: True, **attributes}
    return tracer().start_span(name, kind=SpanKind.CLIENT, attributes=attrs)


def remote_parent(trace_id: str, span_id: str, sampled: bool = True) -> Context:
    """A context whose current span is ``span_id`` of ``trace_id`` (hex), known but
    not recorded here (a span another process exports)."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(NonRecordingSpan(parent))


def start_span_with_id(
    name: str,
    span_id: str,
    *,
    context: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    start_time: float | None = None,
    links: Sequence[tuple[str, str, Mapping[str, Any]]] = (),
    trace_id: str | None = None,
    via: trace.Tracer | None = None,
) -> Span:
    """Start a span whose id is ``span_id`` (hex) under this module's id generator;
    ``start_time`` in epoch seconds (None: now); ``trace_id``: the trace of a span
    without a parent; ``via``: a tracer of another provider than the global one
    (made with this module's id generator). The caller ends it."""
    token = _next_span_id.set(int(span_id, 16))
    trace_token = _next_trace_id.set(int(trace_id, 16) if trace_id else None)
    try:
        return (via or tracer()).start_span(
            name,
            context=context,
            kind=kind,
            attributes=dict(attributes or {}),
            start_time=None if start_time is None else int(start_time * 1e9),
            links=[
                Link(
                    SpanContext(int(t, 16), int(s, 16), is_remote=True),
                    dict(a),
                )
                for t, s, a in links
            ],
        )
    finally:
        _next_span_id.reset(token)
        _next_trace_id.reset(trace_token)


@contextlib.contextmanager
def span_with_id(
    name: str,
    span_id: str,
    *,
    context: Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """:func:`start_span_with_id` as the current span until the block ends; an
    exception leaving the block marks it failed."""
    span = start_span_with_id(name, span_id, context=context, attributes=attributes)
    with trace.use_span(span, end_on_exit=True, record_exception=True):
        yield span


def set_error(span: Span, error: Mapping[str, Any] | None) -> None:
    """Mark ``span`` failed with a stored error (``name``, ``message``)."""
    error = error or {}
    span.set_status(Status(StatusCode.ERROR, str(error.get("message") or "")))


def at_ns(epoch: float) -> int:
    return int(epoch * 1e9)


def emit_spans(spans: Sequence[DomainSpan], via: trace.Tracer | None = None) -> None:
    """Export finished spans of a run's trace (the server's share: the run, its
    waits, child runs and batches) with their own ids and times (``via``: see
    :func:`start_span_with_id`)."""
    for s in spans:
        if s.end_time is None:
            continue
        # a run starting its trace is a root span, in its run tree's trace
        parent = remote_parent(s.trace_id, s.parent_span_id) if s.parent_span_id else Context()
        span = start_span_with_id(
            s.name,
            s.span_id,
            context=parent,
            kind=SpanKind.CONSUMER if s.kind == "run" else SpanKind.INTERNAL,
            attributes={**s.attributes, RUN_SPAN: s.kind},
            start_time=s.start_time,
            trace_id=s.trace_id,
            links=[(lk.trace_id, lk.span_id, lk.attributes) for lk in s.links],
            via=via,
        )
        for e in s.events:
            span.add_event(e.name, dict(e.attributes), timestamp=at_ns(e.time))
        if s.status == "OK":
            span.set_status(Status(StatusCode.OK))
        elif s.status == "ERROR":
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=at_ns(s.end_time))


class RunSpanSender:
    """Sends the server's share of finished runs' spans (:func:`emit_spans`) to an
    exporter itself, not through a batching processor, so that it can say
    whether the collector took them: the servers' shared export position moves
    only past a batch that was sent (``engine/traces.py``). Called from one
    thread at a time or several: sends take turns."""

    def __init__(self, exporter: Any, service_name: str) -> None:
        from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

        ended: list[ReadableSpan] = []

        class Collect(SpanProcessor):
            def on_end(self, span: ReadableSpan) -> None:
                ended.append(span)

        provider = TracerProvider(
            resource=_resource(service_name),
            id_generator=derived_ids(),
            sampler=_sampler(internal_rate()),  # keeps every span of a run's trace
        )
        provider.add_span_processor(Collect())
        self._ended = ended
        self._exporter = exporter
        self._tracer = provider.get_tracer("triggerfish", __version__)
        self._turn = threading.Lock()

    def __call__(self, spans: Sequence[DomainSpan]) -> bool:
        """Send ``spans``; whether the exporter reported success."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        with self._turn:
            self._ended.clear()
            emit_spans(spans, via=self._tracer)
            batch = list(self._ended)
            self._ended.clear()
            if not batch:
                return True
            return bool(self._exporter.export(batch) is SpanExportResult.SUCCESS)


def send_run_spans(spans: Sequence[DomainSpan]) -> bool:
    """Send the server's share of finished runs' spans with the sender
    :func:`configure` made; whether they were taken. Without one, through the
    global provider (a batching processor: assumed taken)."""
    if _run_spans is None:
        emit_spans(spans)
        return True
    return _run_spans(spans)
