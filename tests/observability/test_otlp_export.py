"""Traces exported over OTLP to a real receiver in the test: one connected trace per
run tree, rooted at the caller's span."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from tests import support
from tests.observability.otlp import ReceivedSpan, grpc_receiver, http_receiver
from triggerfish import Triggerfish
from triggerfish._domain.traces import run_span_id

PROJECT = Path(__file__).parent.parent / "otel_project"


def _otel_env(endpoint: str, protocol: str = "http/protobuf") -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }


def _one(spans: list[ReceivedSpan], **where: object) -> ReceivedSpan:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in where.items())]
    assert len(found) == 1, (where, [(s.name, s.span_id) for s in spans])
    return found[0]


def test_a_run_tree_is_one_trace_under_the_callers_span(tmp_path: Path) -> None:
    with (
        http_receiver() as (endpoint, received),
        support.database("sqlite", tmp_path) as db_url,
    ):
        key = support.create_key(db_url)
        server = support.start_server(db_url, tmp_path, extra_env=_otel_env(endpoint))
        worker = support.start_worker(
            server,
            key,
            tmp_path,
            project=PROJECT,
            extra_env={**_otel_env(endpoint), "TRIGGERFISH_SUSPEND_THRESHOLD": "0.2"},
        )
        client = Triggerfish(api_url=server.url, secret_key=key)
        with support.processes_stopped(server, worker):
            # the app's own request span (its provider is not global: only its context
            # reaches the SDK, which sends it as the trigger's traceparent)
            app = TracerProvider().get_tracer("app")
            with app.start_as_current_span("POST /signup") as request:
                handle = client.tasks.trigger("otel-parent", {"key": uuid.uuid4().hex})
            caller = request.get_span_context()
            run = client.runs.poll(handle.id, timeout=60, interval=0.1)
            assert run.status == "COMPLETED", run.error
            trace_id = format(caller.trace_id, "032x")
            run_span = run_span_id(handle.id)

            def complete() -> bool:
                names = {s.name for s in received.snapshot()}
                return {"otel-parent", "otel-kid", "app.query"} <= names and any(
                    n.startswith("wait.for") for n in names
                )

            support.wait_for(complete, timeout=30, what="the run tree's spans")
            client.close()
    everything = received.snapshot()
    # every span of a run (ours have triggerfish.* attributes) is in the caller's trace
    # (the servers' own work, sampled, is in traces of its own)
    ours = [
        s
        for s in everything
        if any(k.startswith("triggerfish.") for k in s.attributes)
        and "triggerfish.internal" not in s.attributes
    ]
    assert ours and {s.trace_id for s in ours} == {trace_id}
    # (FastAPI's request spans of the public API, if any, are traces of their own)
    spans = [s for s in everything if s.trace_id == trace_id]
    ids = {s.span_id for s in spans}
    root = _one(spans, span_id=run_span)
    assert root.name == "otel-parent" and root.parent_span_id == format(caller.span_id, "016x")
    assert root.service == "triggerfish-server"
    # every span but the root hangs off one received: one connected tree
    assert all(s.parent_span_id in ids for s in spans if s is not root)
    attempts = [s for s in spans if s.name.startswith("attempt") and s.parent_span_id == run_span]
    assert attempts and all(a.service == "triggerfish-task" for a in attempts)
    fetch = _one(spans, name="step.run(fetch)")
    assert fetch.parent_span_id in {a.span_id for a in attempts}
    assert [e[0] for e in fetch.events] == ["STEP_RETRIED"]
    assert fetch.events[0][1]["exception.message"] == "the first try fails"
    query = _one(spans, name="app.query")
    assert query.parent_span_id == fetch.span_id and query.attributes["db.system"] == "postgresql"
    waited = next(s for s in spans if s.name.startswith("wait.for"))
    assert waited.attributes["triggerfish.wait.type"] == "DURATION"
    assert waited.parent_span_id in {a.span_id for a in attempts}
    child_entry = _one(spans, name="trigger_and_wait(otel-kid)")
    kid = _one(spans, name="otel-kid")
    assert kid.parent_span_id == child_entry.span_id
    assert child_entry.links and child_entry.links[0] == (trace_id, kid.span_id)
    kid_attempt = _one(spans, parent_span_id=kid.span_id)
    assert kid_attempt.name == "attempt 1"


_EMIT = textwrap.dedent(
    """
    from triggerfish import _otel
    assert _otel.configure("grpc-check")
    with _otel.tracer().start_as_current_span("over grpc"):
        pass
    _otel.flush()
    """
)


@pytest.mark.timeout(60)
def test_the_grpc_exporter_reaches_a_grpc_receiver() -> None:
    with grpc_receiver() as (endpoint, received):
        # a span of no run: internal, kept at the internal rate
        internal = {"TRIGGERFISH_TRACES_INTERNAL_SAMPLE_RATE": "1"}
        env = {**support._env({**_otel_env(endpoint, "grpc"), **internal})}
        done = subprocess.run(
            [sys.executable, "-c", _EMIT], env=env, capture_output=True, text=True, timeout=50
        )
        assert done.returncode == 0, done.stderr
        support.wait_for(lambda: received.snapshot(), timeout=10, what="the span over gRPC")
    (span,) = received.snapshot()
    assert span.name == "over grpc" and span.service == "grpc-check"
