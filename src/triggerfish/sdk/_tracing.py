"""The spans a task process exports: its attempt, and each ``step.run`` it executes.

Both get the ids ``_domain/traces.py`` derives, under the run's span (which the
server exports, with the run's waits and child runs, once the run finishes), so
one trace holds them all. Task code's own spans (the normal OpenTelemetry API)
nest under the step or attempt that is current. Nothing here runs unless
this process exports spans (``_otel.configure``): a replayed step makes no span
either, its span was exported by the attempt that ran it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from triggerfish import _otel
from triggerfish._domain.attempts import AttemptOutcome, Failed, Job, Succeeded
from triggerfish._domain.traces import attempt_span_id, entry_span_id, run_span_id


def enabled(job: Job) -> bool:
    return bool(job.trace_id) and _otel.configured()


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
    }
    span = _otel.start_span_with_id(
        f"attempt {job.attempt_number}",
        attempt_span_id(job.attempt_id),
        context=parent,
        attributes=attributes,
    )
    with trace.use_span(span, end_on_exit=True, record_exception=False):
        yield span


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
    """A step's span while it executes: a ``STEP_RETRIED`` event per failed try."""

    def __init__(self, run_id: str, seq: int, key: str, display: dict[str, Any]) -> None:
        attributes: dict[str, Any] = {
            "triggerfish.step.key": key,
            "triggerfish.journal.seq": seq,
            **display,
        }
        name = str(display.get("triggerfish.step.name") or f"step.run({key})")
        self.span = _otel.start_span_with_id(
            name, entry_span_id(run_id, seq), attributes=attributes
        )
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
