"""Prometheus metrics of a server: what runs do, how queues and workers stand.

Nothing is counted on the hot paths. Run-level counters and histograms come
from a walk of the history's primary key (``run_events``: every status change
of every run, whichever path made it) that the servers of one database share
(``history_cursors``): a server takes the next rows when it is scraped, by
moving the shared position with a compare-and-set, and counts only the rows it
took. So each status change is counted by one server, and ``sum`` over the
servers gives the true totals (a stopped server's share goes with it, which
``rate``/``increase`` read as a counter reset). The walk starts at the newest
row when the first server starts. The other counters (HTTP requests, statement
times, reclaimed leases) count what the server itself did: ``sum`` them too.
Gauges are read from the shared store when ``/metrics`` is scraped, so every
server reports the same values: aggregate them with ``max``, not ``sum``
(``deploy/grafana/triggerfish.json`` does both). Labels are bounded:
environment, task, queue, status, kind, never a run id.

Metrics (all ``triggerfish_`` prefixed): counters ``runs_triggered_total``,
``runs_started_total``, ``runs_finished_total`` (by status),
``heartbeat_misses_total``, ``http_requests_total``; histograms
``run_duration_seconds``, ``attempt_duration_seconds``,
``trigger_to_start_seconds``, ``db_statement_duration_seconds``,
``http_request_duration_seconds`` (by route template and status); gauges of
the shared store ``queue_depth``, ``queue_oldest_age_seconds``,
``concurrency_in_use``, ``concurrency_limit``, ``runs_waiting`` (by kind),
``workers_online``; and the server's own gauge ``db_pool_in_use``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import event

from triggerfish._domain.states import FINAL, RunStatus
from triggerfish.engine.resources import EngineResources
from triggerfish.store import cursors as store_cursors
from triggerfish.store import metrics as metric_store

#: history rows read per pass (a busy store is caught up over several)
WALK_BATCH = 5000
#: passes one scrape makes at most (the rest waits for the next scrape)
_WALKS_PER_SCRAPE = 20
_FINAL = frozenset(s.value for s in FINAL)
_BEFORE_START = frozenset({RunStatus.QUEUED.value, RunStatus.DEQUEUED.value})
_DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)
_STATEMENTS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


class _Extra(Collector):
    """Counters the engine keeps as plain integers (lost leases)."""

    def __init__(self, lost: Callable[[], int]) -> None:
        self.lost = lost

    def collect(self) -> Any:
        family = CounterMetricFamily(
            "triggerfish_heartbeat_misses",
            "Attempts reclaimed because their worker stopped heartbeating",
        )
        family.add_metric([], self.lost())
        yield family


class Metrics:
    def __init__(self, res: EngineResources, lost_leases: Callable[[], int]) -> None:
        self.res = res
        self.registry = r = CollectorRegistry(auto_describe=True)
        by_task = ["environment", "task"]
        self.triggered = Counter("triggerfish_runs_triggered", "Runs created", by_task, registry=r)
        self.started = Counter(
            "triggerfish_runs_started", "Runs whose first attempt started", by_task, registry=r
        )
        self.finished = Counter(
            "triggerfish_runs_finished",
            "Runs that reached a final status",
            [*by_task, "status"],
            registry=r,
        )
        self.run_duration = Histogram(
            "triggerfish_run_duration_seconds",
            "From a run's first start to its final status",
            [*by_task, "status"],
            buckets=_DURATIONS,
            registry=r,
        )
        self.attempt_duration = Histogram(
            "triggerfish_attempt_duration_seconds",
            "From an attempt's start to its end",
            by_task,
            buckets=_DURATIONS,
            registry=r,
        )
        self.latency = Histogram(
            "triggerfish_trigger_to_start_seconds",
            "From a run's trigger to its first attempt's start",
            [*by_task, "queue"],
            buckets=_DURATIONS,
            registry=r,
        )
        by_queue = ["environment", "queue"]
        self.depth = Gauge("triggerfish_queue_depth", "Runs queued", by_queue, registry=r)
        self.oldest = Gauge(
            "triggerfish_queue_oldest_age_seconds",
            "Age of the oldest queued run",
            by_queue,
            registry=r,
        )
        self.in_use = Gauge(
            "triggerfish_concurrency_in_use", "Runs holding a slot", by_queue, registry=r
        )
        self.limit = Gauge(
            "triggerfish_concurrency_limit",
            "A queue's concurrency limit (queues with one)",
            by_queue,
            registry=r,
        )
        self.waiting = Gauge(
            "triggerfish_runs_waiting",
            "Runs waiting durably, by what they wait for",
            ["environment", "kind"],
            registry=r,
        )
        self.workers = Gauge(
            "triggerfish_workers_online",
            "Workers heard from within a heartbeat timeout",
            ["environment"],
            registry=r,
        )
        self.pool = Gauge(
            "triggerfish_db_pool_in_use", "Database connections checked out", registry=r
        )
        self.statements = Histogram(
            "triggerfish_db_statement_duration_seconds",
            "Time of the statements sent through SQLAlchemy",
            buckets=_STATEMENTS,
            registry=r,
        )
        self.http = Counter(
            "triggerfish_http_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_time = Histogram(
            "triggerfish_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route", "method"],
            buckets=(*_STATEMENTS, 2.5, 10, 60),
            registry=r,
        )
        r.register(_Extra(lost_leases))
        self._timed = False

    def time_statements(self) -> None:
        """Observe every statement SQLAlchemy sends (the driver-level fast paths of
        trigger, claim and journal write are not seen)."""
        if self._timed:
            return
        self._timed = True
        sync = self.res.db.engine.sync_engine
        observe = self.statements.observe

        @event.listens_for(sync, "before_cursor_execute")
        def _before(
            conn: Any, cursor: Any, statement: Any, params: Any, ctx: Any, many: Any
        ) -> None:
            conn.info["tf_t0"] = time.perf_counter()

        @event.listens_for(sync, "after_cursor_execute")
        def _after(
            conn: Any, cursor: Any, statement: Any, params: Any, ctx: Any, many: Any
        ) -> None:
            t0 = conn.info.pop("tf_t0", None)
            if t0 is not None:
                observe(time.perf_counter() - t0)

    async def start_counting(self) -> None:
        """Start the shared walk at the newest history row, unless a server did:
        the first server's counts start from here, the others' from their first
        scrape."""
        async with self.res.db.write() as conn:
            newest = await metric_store.last_event_id(conn)
            await store_cursors.start_cursor(conn, store_cursors.METRICS_CURSOR, newest)

    async def walk_history(self) -> int:
        """Count the status changes this server took from the shared walk of the
        history; how many rows it took (0: none new, or another server took them)."""
        cursor = store_cursors.METRICS_CURSOR
        async with self.res.db.read() as conn:
            position = await store_cursors.cursor_position(conn, cursor)
            rows = (
                await metric_store.history_since(conn, position, WALK_BATCH)
                if position is not None
                else []
            )
        if position is None:
            await self.start_counting()
            return 0
        if not rows:
            return 0
        async with self.res.db.write() as conn:
            if not await store_cursors.move_cursor(conn, cursor, position, rows[-1].id):
                return 0  # another server took these rows: they are in its counters
        for row in rows:
            self._count(row)
        return len(rows)

    def _count(self, row: metric_store.HistoryRow) -> None:
        labels = (row.env, row.task)
        if row.from_status is None:
            self.triggered.labels(*labels).inc()
        if row.from_status == RunStatus.EXECUTING.value:
            took = _seconds(row.attempt_started_at, row.attempt_finished_at)
            if took is not None:
                self.attempt_duration.labels(*labels).observe(took)
        first_start = row.to_status == RunStatus.EXECUTING.value and row.attempt_number == 1
        if first_start and row.from_status in _BEFORE_START:
            self.started.labels(*labels).inc()
            wait = _seconds(row.created_at, row.started_at)
            if wait is not None:
                self.latency.labels(*labels, row.queue).observe(wait)
        if row.to_status in _FINAL:
            self.finished.labels(*labels, row.to_status).inc()
            took = _seconds(row.started_at, row.finished_at)
            if took is not None:
                self.run_duration.labels(*labels, row.to_status).observe(took)

    async def refresh(self) -> None:
        """Read the gauges from the store and catch up on the history."""
        for _ in range(_WALKS_PER_SCRAPE):
            if await self.walk_history() < WALK_BATCH:
                break
        now = datetime.now(UTC).replace(tzinfo=None)
        async with self.res.db.read() as conn:
            depths = await metric_store.queue_depths(conn)
            slots = await metric_store.slots_in_use(conn)
            waits = await metric_store.waiting_by_kind(conn)
            seen = self.res.clock.now() - self.res.settings.heartbeat_timeout
            online = await metric_store.workers_online(conn, seen)
        for gauge in (self.depth, self.oldest, self.in_use, self.limit, self.waiting, self.workers):
            gauge.clear()
        for env, queue, n, oldest in depths:
            self.depth.labels(env, queue).set(n)
            self.oldest.labels(env, queue).set(_seconds(oldest, now) or 0.0)
        for env, queue, n, limit in slots:
            self.in_use.labels(env, queue).set(n)
            if limit is not None:
                self.limit.labels(env, queue).set(limit)
        for env, kind, n in waits:
            self.waiting.labels(env, kind).set(n)
        for env, n in online:
            self.workers.labels(env).set(n)
        pool = self.res.db.engine.pool
        checked_out = getattr(pool, "checkedout", None)
        self.pool.set(checked_out() if callable(checked_out) else 0)

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http.labels(route, method, str(status)).inc()
        self.http_time.labels(route, method).observe(seconds)

    async def render(self) -> bytes:
        await self.refresh()
        return generate_latest(self.registry)
