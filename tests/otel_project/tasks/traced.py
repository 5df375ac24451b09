"""Tasks of the observability tests: a retried step, a wait, a child run, a span of
the task's own (the normal OpenTelemetry API)."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from triggerfish import logger, retry, step, task, wait

_tries: dict[str, int] = {}


@task(id="otel-kid", retry=retry(max_attempts=1))
def otel_kid(payload: dict[str, Any]) -> int:
    return int(payload["n"]) * 2


def _flaky(key: str) -> str:
    _tries[key] = _tries.get(key, 0) + 1
    if _tries[key] == 1:
        raise ValueError("the first try fails")
    with trace.get_tracer("app").start_as_current_span("app.query") as span:
        span.set_attribute("db.system", "postgresql")
    return "fetched"


@task(id="otel-parent", retry=retry(max_attempts=2, min_delay=0, max_delay=0, jitter=0))
def otel_parent(payload: dict[str, Any]) -> Any:
    logger.info("starting")
    fetched = step.run(
        "fetch", _flaky, payload["key"], retry=retry(max_attempts=3, min_delay=0, jitter=0)
    )
    wait.for_(seconds=1)
    doubled = otel_kid.trigger_and_wait({"n": 21}).unwrap()
    return {"fetched": fetched, "doubled": doubled}


@task(id="otel-spans", retry=retry(max_attempts=1))
def otel_spans(payload: dict[str, Any]) -> str:
    """Spans of the task's own: one under the attempt (with a child), one in a step."""
    tracer = trace.get_tracer("shop")
    with tracer.start_as_current_span("charge card") as span:
        span.set_attribute("amount", 42)
        span.add_event("authorized", {"code": "A1"})
        with tracer.start_as_current_span("call bank"):
            pass

    def lookup() -> str:
        with tracer.start_as_current_span("look up customer") as inner:
            inner.set_attribute("customer", str(payload["customer"]))
        return "found"

    return str(step.run("lookup", lookup))
