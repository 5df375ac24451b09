"""What the servers export over OTLP, seen by a real receiver: internal spans (dequeue,
database statements) at the configured rate while a run's spans are always kept, and
each run's spans once however many servers share the database."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests import support
from tests.observability.otlp import ReceivedSpan, http_receiver
from triggerfish import Triggerfish
from triggerfish._domain.traces import run_span_id

PROJECT = Path(__file__).parent.parent / "otel_project"


def _otel(endpoint: str, rate: str | None = None) -> dict[str, str]:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    if rate is not None:
        env["TRIGGERFISH_TRACES_INTERNAL_SAMPLE_RATE"] = rate
    return env


def _internal(spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.attributes.get("triggerfish.internal") is True]


@pytest.mark.parametrize("rate", ["0", "1"])
def test_internal_spans_follow_the_rate_and_runs_are_always_kept(rate: str, tmp_path: Path) -> None:
    with (
        http_receiver() as (endpoint, received),
        support.database("sqlite", tmp_path) as db_url,
    ):
        key = support.create_key(db_url)
        server = support.start_server(db_url, tmp_path, extra_env=_otel(endpoint, rate))
        worker = support.start_worker(
            server, key, tmp_path, project=PROJECT, extra_env=_otel(endpoint, rate)
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


def test_two_servers_export_each_run_once(pg_db_url: str, tmp_path: Path) -> None:
    with http_receiver() as (endpoint, received):
        key = support.create_key(pg_db_url)
        # no internal spans: only the runs' spans are counted
        env = _otel(endpoint, "0")
        first = support.start_server(pg_db_url, tmp_path, extra_env=env)
        second = support.start_server(pg_db_url, tmp_path, extra_env=env)
        worker = support.start_worker(first, key, tmp_path, project=PROJECT)
        client = Triggerfish(api_url=second.url, secret_key=key)
        with support.processes_stopped(first, second, worker):

            def finish(count: int) -> list[str]:
                handles = [client.tasks.trigger("otel-kid", {"n": n}) for n in range(count)]
                for handle in handles:
                    run = client.runs.poll(handle.id, timeout=60, interval=0.1)
                    assert run.status == "COMPLETED", run.error
                ids = [run_span_id(h.id) for h in handles]
                support.wait_for(
                    lambda: set(ids) <= {s.span_id for s in received.snapshot()},
                    timeout=30,
                    what="the runs' spans",
                )
                return ids

            runs = finish(6)
            # more runs finished and exported after those: both servers have walked
            # past the first ones by the time these arrive
            later = finish(2)
            client.close()
    counts = Counter(s.span_id for s in received.snapshot())
    assert {span: counts[span] for span in runs + later} == {span: 1 for span in runs + later}
