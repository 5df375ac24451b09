"""What the servers export over OTLP, seen by a real receiver: internal spans (dequeue,
database statements) at the configured rate while a run's spans are always kept, and
each run's spans once however many servers share the database (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.observability.otlp import ReceivedSpan, http_receiver
from tests.support.in_process import in_process_worker, trigger_run
from triggerfish import Triggerfish, _otel, retry, task
from triggerfish._domain.traces import Span as DomainSpan
from triggerfish._domain.traces import run_span_id
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.sdk._registry import TaskRegistry, collecting_into

PROJECT = Path(__file__).parent.parent / "otel_project"


def _otel_env(endpoint: str, rate: str | None = None) -> dict[str, str]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    if rate is not None:
        env["TRIGGERFISH_TRACES_INTERNAL_SAMPLE_RATE"] = rate
    return env


def _registry() -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="kid", retry=retry(max_attempts=1))
        def kid(payload: dict[str, Any]) -> int:
            return int(payload["n"]) * 2

    return registry


def _internal(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.attributes.get("triggerfish.internal") is True]


@pytest.mark.parametrize("rate", ["0", "1"])
def test_internal_spans_follow_the_rate_and_runs_are_always_kept(rate: str, tmp_path: Path) -> None:
    with (
        http_receiver() as (endpoint, received),
        support.database("sqlite", tmp_path) as db_url,
    ):
        key = support.create_key(db_url)
        server = support.start_server(db_url, tmp_path, extra_env=_otel_env(endpoint, rate))
        worker = support.start_worker(
            server, key, tmp_path, project=PROJECT, extra_env=_otel_env(endpoint, rate)
        )
        client = Triggerfish(api_url=server.url, secret_key=key)
        with support.processes_stopped(server, worker):
            handle = client.tasks.trigger("otel-spans", {"customer": "c-1"})
            assert client.runs.poll(handle.id, timeout=60, interval=0.1).status == "COMPLETED"
            run_span = run_span_id(handle.id)

            def exported() -> bool:
                ids = {s.span_id for s in received.snapshot()}
                names = {s.name for s in received.snapshot()}
                return run_span in ids and "charge card" in names

            # the server exports a run's span after the run finished, so after the
            # dequeue and the statements that led there: one exporter, in order
            support.wait_for(exported, timeout=30, what="the run's spans")
            if rate == "1":
                support.wait_for(
                    lambda: (
                        {"triggerfish.dequeue", "db.select"}
                        <= {s.name for s in _internal(received.snapshot())}
                    ),
                    timeout=30,
                    what="internal spans",
                )
            client.close()
    spans = received.snapshot()
    internal = _internal(spans)
    names = {s.name for s in spans}
    # the run's spans, whatever the rate: the run (server), attempt and task code's (task)
    assert {"otel-spans", "attempt 1", "step.run(lookup)", "charge card"} <= names
    if rate == "0":
        assert internal == []
        return
    dequeues = {s.span_id for s in internal if s.name == "triggerfish.dequeue"}
    assert all(s.service == "triggerfish-server" for s in internal)
    statements = [s for s in internal if s.name.startswith("db.")]
    assert all(s.attributes["db.system"] == "sqlite" for s in statements)
    # a claim's statements nest in its dequeue span
    assert any(s.parent_span_id in dequeues for s in statements)


def _exporting_tracer(endpoint: str) -> tuple[Any, Any]:
    """A tracer exporting over OTLP/HTTP to ``endpoint``, on a provider of its own
    (the test process's global one stays untouched); (provider, tracer)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": "triggerfish-server"}),
        id_generator=_otel.derived_ids(),
    )
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    return provider, provider.get_tracer("triggerfish")


async def test_two_servers_on_one_database_export_each_run_once(
    db_url: str, engine: Engine, clock: ManualClock
) -> None:
    """Two engines (two servers) on one database run their export passes side by
    side; the receiver gets each finished run's span once."""
    env_id, worker = await in_process_worker(engine, _registry())
    with http_receiver() as (endpoint, received):
        provider, tracer = _exporting_tracer(endpoint)

        def emit(spans: Sequence[DomainSpan]) -> None:
            _otel.emit_spans(spans, via=tracer)

        async with support.started_engine(db_url, clock) as other:
            servers = [engine, other]
            for server in servers:  # each starts watching (the first makes the position)
                await server.traces.export_finished(emit)
            runs: list[str] = []

            async def passes() -> int:
                done = await asyncio.gather(*(s.traces.export_finished(emit) for s in servers))
                return sum(done)

            for _ in range(3):
                runs += [await trigger_run(engine, env_id, "kid", {"n": n}) for n in range(4)]
                await worker.run_until_idle()
                # both servers' passes race for the same finished runs
                while await passes():
                    pass
            provider.force_flush()
            spans = {run_span_id(r) for r in runs}
            support.wait_for(
                lambda: spans <= {s.span_id for s in received.snapshot()},
                timeout=30,
                what="the runs' spans",
            )
            # every pass of both servers now finds nothing more to export
            assert await passes() == 0
            provider.shutdown()
    counts = Counter(s.span_id for s in received.snapshot() if s.span_id in spans)
    assert counts == Counter({span: 1 for span in spans})


def test_the_rate_is_a_number_from_0_to_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_otel.INTERNAL_RATE_ENV, raising=False)
    assert _otel.internal_rate() == 0.05
    monkeypatch.setenv(_otel.INTERNAL_RATE_ENV, "0.25")
    assert _otel.internal_rate() == 0.25
    for bad in ("often", "1.5", "-0.1"):
        monkeypatch.setenv(_otel.INTERNAL_RATE_ENV, bad)
        with pytest.raises(ValueError, match=_otel.INTERNAL_RATE_ENV):
            _otel.internal_rate()
