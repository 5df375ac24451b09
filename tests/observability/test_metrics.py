"""``/metrics``: scraped and parsed with prometheus_client's parser; the values move
as runs are triggered, wait and finish; the Grafana dashboard's metrics exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests import support
from tests.support.in_process import InProcessWorker, in_process_worker, trigger_run
from triggerfish import retry, task, wait
from triggerfish._domain.attempts import Failed, Succeeded
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.worker.metrics import WorkerMetrics

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "triggerfish.json"


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def _registry() -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="quick", retry=retry(max_attempts=1))
        def quick(payload: Any) -> int:
            return 1

        @task(id="broken", retry=retry(max_attempts=1))
        def broken(payload: Any) -> None:
            raise ValueError("no")

        @task(id="sleepy", retry=retry(max_attempts=1))
        def sleepy(payload: Any) -> None:
            wait.for_(hours=1)

    return registry


async def _scrape(engine: Engine) -> dict[Any, float]:
    return _parse((await engine.metrics.render()).decode())


async def test_run_metrics_move_as_runs_are_triggered_wait_and_finish(engine: Engine) -> None:
    env_id, worker = await in_process_worker(engine, _registry())
    before = await _scrape(engine)  # the history walk starts here
    assert _value(before, "triggerfish_runs_triggered_total") == 0
    for _ in range(3):
        await trigger_run(engine, env_id, "quick")
    await trigger_run(engine, env_id, "broken")
    await trigger_run(engine, env_id, "sleepy")
    queued = await _scrape(engine)
    assert _value(queued, "triggerfish_runs_triggered_total", task="quick", environment="dev") == 3
    assert _value(queued, "triggerfish_queue_depth", environment="dev") == 5
    assert _value(queued, "triggerfish_queue_oldest_age_seconds") >= 0
    assert _value(queued, "triggerfish_workers_online", environment="dev") == 1
    await worker.run_until_idle()
    done = await _scrape(engine)
    assert _value(done, "triggerfish_queue_depth") == 0
    assert _value(done, "triggerfish_runs_started_total") == 5
    finished = "triggerfish_runs_finished_total"
    assert _value(done, finished, task="quick", status="COMPLETED") == 3
    assert _value(done, finished, task="broken", status="FAILED") == 1
    assert _value(done, "triggerfish_run_duration_seconds_count") == 4
    assert _value(done, "triggerfish_trigger_to_start_seconds_count", queue="task/quick") == 3
    assert _value(done, "triggerfish_attempt_duration_seconds_count") >= 4
    assert _value(done, "triggerfish_runs_waiting", kind="DURATION") == 1
    assert _value(done, "triggerfish_db_statement_duration_seconds_count") > 0
    # labels stay bounded: never a run id
    assert not any(re.search(r"run_[0-9a-z]{10}", str(key)) for key in done)


async def test_counters_summed_over_two_servers_on_one_database_are_the_true_totals(
    db_url: str, engine: Engine, clock: ManualClock
) -> None:
    """Two servers share a database; runs are triggered on both, run by a worker of
    each, and both are scraped along the way: summed over the servers (what a
    Prometheus ``sum`` does), each counter is the number of runs, and the
    gauges of the shared store are the same on both (``max`` aggregates them)."""
    env_id, first_worker = await in_process_worker(engine, _registry())
    async with support.started_engine(db_url, clock) as other:
        second_worker = await InProcessWorker(other, _registry(), env_id).register()
        servers, workers = [engine, other], [first_worker, second_worker]
        runs = ran = 0
        for round_ in range(3):
            for i, (server, worker) in enumerate(zip(servers, workers, strict=True)):
                for _ in range(round_ + i + 1):
                    await trigger_run(server, env_id, "quick")
                    runs += 1
                await _scrape(server)  # takes the history rows not yet counted
                ran += await worker.run_one() is not None
            scrapes = [await _scrape(s) for s in servers]
            # a gauge of the shared store: the same on both servers
            depths = [_value(s, "triggerfish_queue_depth", environment="dev") for s in scrapes]
            assert depths == [runs - ran] * 2
        for server, worker in zip(servers, workers, strict=True):
            await worker.run_until_idle()
            await _scrape(server)
        scrapes = [await _scrape(s) for s in servers]
    totals = {
        name: sum(_value(s, name, environment="dev", task="quick") for s in scrapes)
        for name in (
            "triggerfish_runs_triggered_total",
            "triggerfish_runs_started_total",
            "triggerfish_runs_finished_total",
            "triggerfish_run_duration_seconds_count",
            "triggerfish_trigger_to_start_seconds_count",
        )
    }
    assert totals == dict.fromkeys(totals, runs)
    # both servers counted a share (whichever server is scraped first takes the rows)
    assert all(0 < _value(s, "triggerfish_runs_triggered_total") < runs for s in scrapes)


async def test_metrics_over_http_count_requests_by_route(engine: Engine) -> None:
    await in_process_worker(engine, _registry())
    key, _ = await engine.environments.create_key("dev", "test")
    port = support.free_port()
    from triggerfish.cli._serve import make_server

    server = make_server(engine, "127.0.0.1", port)
    serving = await support.serve_in_loop(server)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as http:
            for _ in range(2):
                await http.post("/api/v1/tasks/quick/trigger", json={"payload": {}})
            await http.get("/api/v3/runs/run_nope")
            r = await http.get("/metrics")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            samples = _parse(r.text)
            families = {f.name for f in text_string_to_metric_families(r.text)}
    finally:
        await support.stop_serving(server, serving)
    requests = "triggerfish_http_requests_total"
    trigger = "/api/v1/tasks/{task_id}/trigger"
    assert _value(samples, requests, route=trigger, status="200") == 2, [
        k for k in samples if k[0] == requests
    ]
    assert _value(samples, requests, route="/api/v3/runs/{run_id}", status="404") == 1
    assert _value(samples, "triggerfish_runs_triggered_total", task="quick") == 2
    # every metric the Grafana dashboard queries is in the scrape (as a family:
    # a labelled one shows its samples once something happened to it)
    used = {re.sub(r"_(bucket|sum|count|total)$", "", m) for m in _dashboard_metrics()}
    assert len(used) >= 15 and used <= families, used - families


def _dashboard_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return {m for e in exprs for m in re.findall(r"\btriggerfish_[a-z_]+", e)}


def test_a_workers_metrics_are_served_on_its_port() -> None:
    metrics = WorkerMetrics(lambda: 1, slots=4)
    port = support.free_port()
    metrics.serve(port, "127.0.0.1")
    metrics.attempt_done("quick", Succeeded(1), 0.02)
    metrics.attempt_done("quick", None, 0.01)
    from triggerfish._domain.attempts import ErrorInfo

    metrics.attempt_done("broken", Failed(ErrorInfo("E", "m", "", "USER")), 0.5)
    samples = _parse(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
    assert _value(samples, "triggerfish_worker_attempts_total", outcome="succeeded") == 1
    assert _value(samples, "triggerfish_worker_attempts_total", outcome="released") == 1
    assert _value(samples, "triggerfish_worker_attempts_total", task="broken") == 1
    assert _value(samples, "triggerfish_worker_attempt_duration_seconds_count") == 3
    assert _value(samples, "triggerfish_worker_attempts_running") == 1
    assert _value(samples, "triggerfish_worker_slots") == 4
