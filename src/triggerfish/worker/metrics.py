"""A worker's own ``/metrics`` (``triggerfish worker --metrics-port N``): its attempts
by task and outcome, their time, and its slots."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from triggerfish._domain.attempts import (
    Abandoned,
    AttemptOutcome,
    Failed,
    Succeeded,
    Suspended,
)

_DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600)


class WorkerMetrics:
    def __init__(self, running: Callable[[], int], slots: int) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.attempts = Counter(
            "triggerfish_worker_attempts",
            "Attempts this worker ran, by how they ended",
            ["task", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "triggerfish_worker_attempt_duration_seconds",
            "Time an attempt held a slot",
            ["task"],
            buckets=_DURATIONS,
            registry=r,
        )
        Gauge(
            "triggerfish_worker_attempts_running", "Attempts running now", registry=r
        ).set_function(lambda: float(running()))
        Gauge("triggerfish_worker_slots", "Attempts this worker runs at once", registry=r).set(
            slots
        )

    def attempt_done(self, task: str, outcome: AttemptOutcome | None, seconds: float) -> None:
        self.attempts.labels(task, _outcome(outcome)).inc()
        self.duration.labels(task).observe(seconds)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """``GET /metrics`` on ``host:port``, from a thread of its own."""
        start_http_server(port, addr=host, registry=self.registry)


def _outcome(outcome: AttemptOutcome | None) -> str:
    match outcome:
        case Succeeded():
            return "succeeded"
        case Failed():
            return "failed"
        case Suspended():
            return "suspended"
        case Abandoned():
            return "abandoned"
        case _:
            return "released"
