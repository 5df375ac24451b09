"""The run page's waterfall: attempts and journal steps as bars over the run's time.

Built from what the store has today (attempts and the journal); the
observability issue's span store and ``GET /api/v1/runs/{id}/trace`` will feed
the same bars with more (span events, integration calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from triggerfish.engine.runs import RunDetail


@dataclass(frozen=True)
class Bar:
    kind: str  #: "attempt", or the journal entry's kind ("step", "wait", ...)
    label: str
    status: str
    #: position and size, in percent of the run's span
    left: float
    width: float
    tries: int
    seconds: float
    link: str | None = None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def waterfall(detail: RunDetail) -> list[Bar]:
    run = detail.run
    start = run.started_at or run.created_at
    firsts = [a.started_at or a.created_at for a in detail.attempts]
    firsts += [s.started_at for s in detail.steps]
    start = min([start, *firsts])
    end = run.finished_at or _now()
    span = max((end - start).total_seconds(), 0.001)

    def place(a: datetime, b: datetime | None) -> tuple[float, float, float]:
        stop = b or end
        left = max(0.0, (a - start).total_seconds() / span * 100)
        seconds = max(0.0, (stop - a).total_seconds())
        width = max(0.5, min(100.0 - left, seconds / span * 100))
        return round(left, 2), round(width, 2), seconds

    bars: list[Bar] = []
    for attempt in detail.attempts:
        left, width, secs = place(attempt.started_at or attempt.created_at, attempt.finished_at)
        bars.append(
            Bar("attempt", f"Attempt {attempt.number}", attempt.status, left, width, 1, secs)
        )
    for step in detail.steps:
        left, width, secs = place(step.started_at, step.finished_at)
        link = None
        if isinstance(step.result, dict) and str(step.result.get("id", "")).startswith("run_"):
            link = f"/runs/{step.result['id']}"
        bars.append(
            Bar(
                step.kind,
                f"{step.seq + 1}. {step.name}",
                step.status,
                left,
                width,
                step.failures + 1,
                secs,
                link,
            )
        )
    return bars
