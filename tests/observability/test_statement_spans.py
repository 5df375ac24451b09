"""Statement spans of the servers' own work cover the statements the store sends
straight to the driver (the fast paths of trigger and claim), sampled like the
others: all of them at a rate of 1, none at 0 (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.observability.test_metrics import _registry
from tests.support.in_process import in_process_worker, trigger_run
from triggerfish import _otel
from triggerfish.engine import Engine
from triggerfish.store.driver import DRIVER_LEVEL


@contextmanager
def _exporting(monkeypatch: pytest.MonkeyPatch, rate: float) -> Iterator[Any]:
    """The process traces as an exporting server does (``_otel.configure``), into
    memory, internal spans sampled at ``rate``; yields the exporter."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(id_generator=_otel.derived_ids(), sampler=_otel._sampler(rate))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(_otel, "tracer", lambda: provider.get_tracer("triggerfish"))
    monkeypatch.setattr(_otel, "_configured", True)
    yield memory
    provider.shutdown()


async def test_fast_path_statements_get_spans_sampled_like_the_others(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_id, worker = await in_process_worker(engine, _registry())
    engine.res.db.trace_statements()
    fast_claim = engine.res.db.capabilities.one_statement_claim
    with _exporting(monkeypatch, 1.0) as memory:
        await trigger_run(engine, env_id, "quick")
        assert await worker.run_one() is not None
        spans = memory.get_finished_spans()
    driver = [s for s in spans if s.attributes.get(DRIVER_LEVEL)]
    system = engine.res.db.dialect
    assert driver, sorted({s.name for s in spans})
    assert all(s.attributes["db.system"] == system for s in driver)
    assert all(s.name.startswith("db.") and s.attributes["db.statement"] for s in driver)
    statements = " ".join(str(s.attributes["db.statement"]) for s in driver)
    assert "INSERT INTO runs" in statements  # the trigger's fast path
    if fast_claim:  # the one-statement claim, inside its dequeue span
        dequeue = next(s for s in spans if s.name == "triggerfish.dequeue")
        claims = [s for s in driver if s.parent and s.parent.span_id == dequeue.context.span_id]
        assert claims, [s.name for s in driver]
    with _exporting(monkeypatch, 0.0) as memory:
        await trigger_run(engine, env_id, "quick")
        assert await worker.run_one() is not None
        assert [s for s in memory.get_finished_spans() if s.attributes.get(DRIVER_LEVEL)] == []
