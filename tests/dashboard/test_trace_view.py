"""The run page's waterfall from a trace (the engine's, which the API serves too)."""

from __future__ import annotations

from triggerfish._domain.traces import Span, SpanLink
from triggerfish.dashboard.trace import waterfall
from triggerfish.engine.traces import Trace

T0 = 1_800_000_000.0


def _span(
    sid: str, parent: str | None, kind: str, start: float, end: float | None, **attrs: object
) -> Span:
    return Span(
        sid,
        parent,
        "t" * 32,
        kind,
        kind,
        T0 + start,
        None if end is None else T0 + end,
        "OK",
        dict(attrs),
    )


def test_bars_follow_the_span_tree_over_the_runs_time() -> None:
    child = _span("c", "a2", "child", 6, 8, **{"triggerfish.journal.seq": 2})
    child.links.append(
        SpanLink(
            "t" * 32,
            "x",
            {"triggerfish.run.id": "run_child", "triggerfish.run.status": "COMPLETED"},
        )
    )
    spans = [
        _span("r", None, "run", 0, 10, **{"triggerfish.run.status": "COMPLETED"}),
        _span("a1", "r", "attempt", 0, 4, **{"triggerfish.attempt.number": 1}),
        _span(
            "s",
            "a1",
            "step",
            1,
            2,
            **{
                "triggerfish.journal.seq": 0,
                "triggerfish.step.key": "fetch",
                "triggerfish.step.tries": 3,
            },
        ),
        _span(
            "w",
            "a1",
            "wait",
            2,
            5,
            **{
                "triggerfish.journal.seq": 1,
                "triggerfish.wait.type": "DURATION",
                "triggerfish.wait.until": "2027-01-15T08:00:05.000Z",
            },
        ),
        _span("a2", "r", "attempt", 5, None, **{"triggerfish.attempt.number": 2}),
        child,
    ]
    bars = waterfall(Trace("run_1", "t" * 32, "r", None, spans), now=T0 + 10)
    assert [(b.kind, b.depth) for b in bars] == [
        ("run", 0),
        ("attempt", 1),
        ("step", 2),
        ("wait", 2),
        ("attempt", 1),
        ("child", 2),
    ]
    run, first, step, wait, second, linked = bars
    assert (run.left, run.width, run.status) == (0, 100, "COMPLETED")
    assert (step.label, step.tries, step.left, step.width) == ("1. fetch", 3, 10, 10)
    assert (wait.left, wait.width) == (20, 30)
    assert wait.detail == "waits for a duration, until 2027-01-15T08:00:05.000Z"
    assert (second.ended, second.width, second.status) == (False, 50, "OK")
    assert linked.link == "/runs/run_child" and linked.detail == "run run_child completed"
    assert first.label == "Attempt 1" and run.link is None
