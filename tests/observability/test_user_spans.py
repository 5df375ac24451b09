"""Spans task code opens with the normal OpenTelemetry API join the run's trace: kept in
the span store (``GET /api/v1/runs/{id}/trace``, on SQLite and PostgreSQL) under the
attempt or step they nest in, and exported over OTLP with the same parents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests import support
from tests.observability.otlp import http_receiver
from triggerfish import Triggerfish
from triggerfish._domain.traces import attempt_span_id, entry_span_id

PROJECT = Path(__file__).parent.parent / "otel_project"
USER_SPANS = {"charge card", "call bank", "look up customer"}


def _trace(server_url: str, key: str, run_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server_url}/api/v1/runs/{run_id}/trace",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _stored_trace(
    server: support.ServerProc, key: str, extra_env: dict[str, str], tmp_path: Path
) -> tuple[str, str, dict[str, Any]]:
    """Run ``otel-spans`` on a real worker; (run id, attempt id, its trace once the
    task's spans are in)."""
    worker = support.start_worker(server, key, tmp_path, project=PROJECT, extra_env=extra_env)
    client = Triggerfish(api_url=server.url, secret_key=key)
    with support.processes_stopped(server, worker):
        handle = client.tasks.trigger("otel-spans", {"customer": "c-7"})
        run = client.runs.poll(handle.id, timeout=60, interval=0.1)
        assert run.status == "COMPLETED", run.error
        (attempt,) = client.runs.retrieve(handle.id).attempts
        seen: dict[str, Any] = {}

        def stored() -> bool:
            seen["trace"] = _trace(server.url, key, handle.id)
            return {s["name"] for s in seen["trace"]["spans"]} >= USER_SPANS

        support.wait_for(stored, timeout=30, what="the task's spans in the stored trace")
        client.close()
    return handle.id, attempt.id, seen["trace"]


def _check_stored(run_id: str, attempt_id: str, trace: dict[str, Any]) -> dict[str, Any]:
    by_name = {s["name"]: s for s in trace["spans"]}
    attempt = attempt_span_id(attempt_id)
    charge = by_name["charge card"]
    assert charge["kind"] == "user" and charge["parentSpanId"] == attempt
    assert charge["traceId"] == trace["traceId"]
    assert charge["attributes"]["amount"] == 42
    assert [e["name"] for e in charge["events"]] == ["authorized"]
    assert charge["events"][0]["attributes"] == {"code": "A1"}
    assert by_name["call bank"]["parentSpanId"] == charge["spanId"]
    lookup = by_name["look up customer"]
    # the step's span is the first journal entry's
    assert lookup["parentSpanId"] == entry_span_id(run_id, 0)
    assert by_name["step.run(lookup)"]["spanId"] == entry_span_id(run_id, 0)
    assert lookup["attributes"]["customer"] == "c-7"
    # one tree: every span but the run's hangs off another of the trace
    ids = {s["spanId"] for s in trace["spans"]}
    assert all(s["parentSpanId"] in ids for s in trace["spans"] if s["kind"] != "run")
    return by_name


def test_task_code_spans_are_in_the_stored_trace(db_url: str, tmp_path: Path) -> None:
    key = support.create_key(db_url)
    server = support.start_server(db_url, tmp_path)
    run_id, attempt_id, trace = _stored_trace(server, key, {}, tmp_path)
    _check_stored(run_id, attempt_id, trace)


def test_task_code_spans_are_exported_and_stored_alike(tmp_path: Path) -> None:
    with (
        http_receiver() as (endpoint, received),
        support.database("sqlite", tmp_path) as db_url,
    ):
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        key = support.create_key(db_url)
        server = support.start_server(db_url, tmp_path, extra_env=otel)
        run_id, attempt_id, trace = _stored_trace(server, key, otel, tmp_path)
        support.wait_for(
            lambda: {s.name for s in received.snapshot()} >= USER_SPANS,
            timeout=30,
            what="the task's spans at the receiver",
        )
    stored = _check_stored(run_id, attempt_id, trace)
    exported = {s.name: s for s in received.snapshot() if s.trace_id == trace["traceId"]}
    for name in USER_SPANS:
        assert exported[name].span_id == stored[name]["spanId"]
        assert exported[name].parent_span_id == stored[name]["parentSpanId"], name
    assert exported["charge card"].parent_span_id == attempt_span_id(attempt_id)
    assert exported["attempt 1"].span_id == attempt_span_id(attempt_id)
    assert exported["charge card"].attributes["amount"] == 42
