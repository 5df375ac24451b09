"""``GET /api/v1/runs/{id}/trace`` over HTTP, and its shape in the OpenAPI document."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from tests.api.conftest import Served
from triggerfish import Triggerfish

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_queued_runs_trace_is_its_run_span_under_the_callers_span(
    served: Served,
) -> None:
    r = await served.http.post(
        "/api/v1/tasks/job/trigger",
        json={"payload": {}},
        headers={"traceparent": CALLER},
    )
    run_id = r.json()["id"]
    body = (await served.http.get(f"/api/v1/runs/{run_id}/trace")).json()
    assert body["runId"] == run_id
    assert body["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert body["callerSpanId"] == "00f067aa0ba902b7"
    (span,) = body["spans"]
    assert span["spanId"] == body["rootSpanId"] and span["kind"] == "run"
    assert span["parentSpanId"] == "00f067aa0ba902b7"
    assert span["endTime"] is None and span["durationMs"] is None
    assert span["attributes"]["triggerfish.task"] == "job"
    assert span["startTime"].endswith("Z")
    missing = await served.http.get("/api/v1/runs/run_nope/trace")
    assert missing.status_code == 404


async def test_the_trace_shape_is_in_the_openapi_document(served: Served) -> None:
    doc = (await served.http.get("/openapi.json")).json()
    op = doc["paths"]["/api/v1/runs/{run_id}/trace"]["get"]
    ref = op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("/TraceOut")
    span = doc["components"]["schemas"]["SpanOut"]
    assert {"spanId", "parentSpanId", "kind", "events", "links", "attributes"} <= set(
        span["properties"]
    )


@pytest.mark.parametrize("socket", [True, False], ids=["socket", "http"])
async def test_the_sdk_sends_the_callers_context_with_a_trigger(
    served: Served, socket: bool
) -> None:
    app = TracerProvider().get_tracer("app")
    client = Triggerfish(api_url=served.url, secret_key=served.key, socket=socket)
    try:
        with app.start_as_current_span("request") as request:
            handle = await client.tasks.trigger_async("job", {"n": 1})
    finally:
        await client.aclose()
    body = (await served.http.get(f"/api/v1/runs/{handle.id}/trace")).json()
    caller = request.get_span_context()
    assert body["traceId"] == format(caller.trace_id, "032x")
    assert body["callerSpanId"] == format(caller.span_id, "016x")
