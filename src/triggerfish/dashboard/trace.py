"""The run page's waterfall: the run's trace as bars over the run's time.

It reads the same trace as ``GET /api/v1/runs/{id}/trace`` (the engine's
``Traces.trace``, ``engine/traces.py``), never a reconstruction of its own: the
run's span, its attempts, steps (each with its tries, from
``triggerfish.step.tries``), waits (what for and until when), child runs
(linked, with their status), batches, and the spans task code opened. Spans
are drawn depth first, each under its parent, indented by depth.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from triggerfish._domain.traces import Span
from triggerfish.engine.traces import Trace


@dataclass(frozen=True)
class Bar:
    #: the span's kind: "run", "attempt", "step", "wait", "child", "batch", ...
    kind: str
    label: str
    #: what colours the bar: the attempt's or step's status, else the span's
    status: str
    #: position and size, in percent of the run's span
    left: float
    width: float
    tries: int
    seconds: float
    link: str | None = None
    #: how deep in the span tree (the run's span is 0)
    depth: int = 0
    #: a line in words: what a wait waits for, a child run's status
    detail: str = ""
    #: False while the span is open (it runs, or waits)
    ended: bool = True


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _label(span: Span) -> str:
    a = span.attributes
    if span.kind == "run":
        return f"Run {span.name}"
    if span.kind == "attempt":
        return f"Attempt {a.get('triggerfish.attempt.number', '')}".strip()
    seq = a.get("triggerfish.journal.seq")
    if span.kind in ("step", "integration") and isinstance(seq, int):
        name = a.get("triggerfish.step.name") or a.get("triggerfish.step.key") or span.name
        return f"{seq + 1}. {name}"
    if isinstance(seq, int):
        return f"{seq + 1}. {span.name}"
    return span.name


def _status(span: Span) -> str:
    a = span.attributes
    for key in ("triggerfish.attempt.status", "triggerfish.run.status"):
        if span.kind in ("attempt", "run") and a.get(key):
            return str(a[key])
    if span.status == "UNSET":
        return "pending" if span.end_time is None else "unset"
    return span.status


def _wait_detail(a: dict[str, Any]) -> str:
    parts = []
    for prefix in sorted({k.rsplit(".", 1)[0] for k in a if k.startswith("triggerfish.wait")}):
        kind = a.get(f"{prefix}.type")
        if not kind or kind == "RUN":  # a child run: the bar links it, with its status
            continue
        what = {
            "DURATION": "a duration",
            "TOKEN": f"token {_text(a.get(f'{prefix}.token_id'))}",
            "EVENT": f"event {_text(a.get(f'{prefix}.event'))}",
        }.get(str(kind), str(kind).lower())
        until = a.get(f"{prefix}.until") or a.get(f"{prefix}.timeout_at")
        word = "until" if a.get(f"{prefix}.until") else "times out"
        text = f"waits for {what}" + (f", {word} {until}" if until else "")
        status = a.get(f"{prefix}.status")
        parts.append(text + (f" ({str(status).lower()})" if status else ""))
    if not parts:  # a short wait the task slept through: no waitpoint, its kind says
        slept = _WAIT_WORDS.get(_text(a.get("triggerfish.journal.kind")))
        parts += [f"waits for {slept}"] if slept else []
    return "; ".join(parts)


_WAIT_WORDS = {"wait": "a duration", "token.wait": "a token", "event.wait": "an event"}


def _link(span: Span) -> tuple[str | None, str]:
    """Where the bar's label leads (a child run, a batch's runs) and its words."""
    runs = [lk.attributes for lk in span.links if lk.attributes.get("triggerfish.run.id")]
    batch = span.attributes.get("triggerfish.batch.id")
    if span.kind == "batch" and batch:
        return f"/runs?batch={batch}", f"{len(runs)} runs"
    if runs:
        child = runs[0]
        status = child.get("triggerfish.run.status") or span.attributes.get(
            "triggerfish.run.status"
        )
        words = f"run {child['triggerfish.run.id']}" + (f" {str(status).lower()}" if status else "")
        return f"/runs/{child['triggerfish.run.id']}", words
    return None, ""


def _depth_first(trace: Trace) -> Iterator[tuple[Span, int]]:
    known = {s.span_id for s in trace.spans}
    children: dict[str | None, list[Span]] = {}
    for s in trace.spans:  # in start order, so each parent's children are too
        parent = s.parent_span_id if s.parent_span_id in known else None
        if s.span_id == trace.root_span_id:
            parent = None
        children.setdefault(parent, []).append(s)
    stack = [(s, 0) for s in reversed(children.get(None, []))]
    while stack:
        span, depth = stack.pop()
        yield span, depth
        stack.extend((c, depth + 1) for c in reversed(children.get(span.span_id, [])))


def waterfall(trace: Trace, now: float | None = None) -> list[Bar]:
    """The bars of ``trace`` (``Traces.trace``), positioned over the run's time."""
    if not trace.spans:
        return []
    now = datetime.now(UTC).timestamp() if now is None else now
    start = min(s.start_time for s in trace.spans)
    end = max(max((s.end_time or now) for s in trace.spans), start)
    span_of_run = max(end - start, 0.001)

    bars: list[Bar] = []
    for span, depth in _depth_first(trace):
        stop = span.end_time if span.end_time is not None else max(now, span.start_time)
        left = max(0.0, (span.start_time - start) / span_of_run * 100)
        seconds = max(0.0, stop - span.start_time)
        width = max(0.5, min(100.0 - left, seconds / span_of_run * 100))
        tries = span.attributes.get("triggerfish.step.tries")
        link, linked = _link(span)
        detail = _wait_detail(span.attributes)
        if linked and span.kind != "run":
            detail = f"{detail}; {linked}" if detail else linked
        bars.append(
            Bar(
                kind=span.kind,
                label=_label(span),
                status=_status(span),
                left=round(left, 2),
                width=round(width, 2),
                tries=tries if isinstance(tries, int) and tries > 0 else 1,
                seconds=seconds,
                link=None if span.kind == "run" else link,
                depth=depth,
                detail=detail,
                ended=span.end_time is not None,
            )
        )
    return bars
