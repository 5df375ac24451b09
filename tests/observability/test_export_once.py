"""What the servers export over OTLP, seen by a real receiver: internal spans (dequeue,
database statements) at the configured rate while a run's spans are always kept, and
each run's spans once however many servers share the database (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
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
from triggerfish.engine.traces import EXPORT_LEASE
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


def _sender(endpoint: str) -> _otel.RunSpanSender:
    """What an exporting server sends finished runs' spans with, to ``endpoint``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")
    return _otel.RunSpanSender(exporter, "triggerfish-server")


async def test_two_servers_on_one_database_export_each_run_once(
    db_url: str, engine: Engine, clock: ManualClock
) -> None:
    """Two engines (two servers) on one database run their export passes side by
    side; the receiver gets each finished run's span once."""
    env_id, worker = await in_process_worker(engine, _registry())
    with http_receiver() as (endpoint, received):
        send = _sender(endpoint)
        async with support.started_engine(db_url, clock) as other:
            servers = [engine, other]
            for server in servers:  # each starts watching (the first makes the position)
                await server.traces.export_finished(send)
            runs: list[str] = []

            async def passes() -> int:
                done = await asyncio.gather(*(s.traces.export_finished(send) for s in servers))
                return sum(done)

            for _ in range(3):
                runs += [await trigger_run(engine, env_id, "kid", {"n": n}) for n in range(4)]
                await worker.run_until_idle()
                # both servers' passes race for the same finished runs
                while await passes():
                    pass
            # every pass of both servers now finds nothing more to export
            assert await passes() == 0
    spans = {run_span_id(r) for r in runs}
    counts = Counter(s.span_id for s in received.snapshot() if s.span_id in spans)
    assert counts == Counter({span: 1 for span in spans})


async def test_a_batch_whose_server_stops_before_sending_is_sent_by_another(
    db_url: str, engine: Engine, clock: ManualClock
) -> None:
    """A server takes a batch of finished runs and stops before sending it: no
    other server sends it while that server's lease holds, and one does once
    the lease expired; the receiver gets every run's span, once."""
    env_id, worker = await in_process_worker(engine, _registry())
    with http_receiver() as (endpoint, received):
        send = _sender(endpoint)
        async with support.started_engine(db_url, clock) as other:
            await engine.traces.export_finished(send)  # the position starts here
            runs = [await trigger_run(engine, env_id, "kid", {"n": n}) for n in range(3)]
            await worker.run_until_idle()
            await _stopped_before_sending(engine)
            assert await other.traces.export_finished(send) == 0  # the lease holds
            clock.advance(EXPORT_LEASE + 1)
            assert await other.traces.export_finished(send) == len(runs)
            assert await other.traces.export_finished(send) == 0
            assert await engine.traces.export_finished(send) == 0
    counts = Counter(s.span_id for s in received.snapshot())
    assert counts == Counter({run_span_id(r): 1 for r in runs})


async def _stopped_before_sending(server: Engine) -> None:
    """Let ``server`` take the next batch, then cancel its pass (as a stopping server
    does) before the send went out; the send never happens."""
    taken, stopped = threading.Event(), threading.Event()

    def send_after_stop(spans: Sequence[DomainSpan]) -> bool:
        assert spans
        taken.set()
        stopped.wait(30)
        return False  # the spans never left

    export = asyncio.create_task(server.traces.export_finished(send_after_stop))
    assert await asyncio.to_thread(taken.wait, 30), "the server never took the batch"
    export.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await export
    stopped.set()


async def test_a_batch_the_collector_refused_is_sent_again(
    db_url: str, engine: Engine, clock: ManualClock
) -> None:
    """The collector refuses the first send: the position stays, the lease is given
    back, and the next pass (of any server) sends the batch."""
    env_id, worker = await in_process_worker(engine, _registry())
    with http_receiver(refuse=1) as (endpoint, received):
        send = _sender(endpoint)
        async with support.started_engine(db_url, clock) as other:
            await engine.traces.export_finished(send)
            runs = [await trigger_run(engine, env_id, "kid", {"n": n}) for n in range(2)]
            await worker.run_until_idle()
            assert await engine.traces.export_finished(send) == 0  # refused
            assert received.snapshot() == []
            assert await other.traces.export_finished(send) == len(runs)
    counts = Counter(s.span_id for s in received.snapshot())
    assert counts == Counter({run_span_id(r): 1 for r in runs})


def test_the_rate_is_a_number_from_0_to_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_otel.INTERNAL_RATE_ENV, raising=False)
    assert _otel.internal_rate() == 0.05
    monkeypatch.setenv(_otel.INTERNAL_RATE_ENV, "0.25")
    assert _otel.internal_rate() == 0.25
    for bad in ("often", "1.5", "-0.1"):
        monkeypatch.setenv(_otel.INTERNAL_RATE_ENV, bad)
        with pytest.raises(ValueError, match=_otel.INTERNAL_RATE_ENV):
            _otel.internal_rate()
