"""Properties of a trace built from any records: one tree, one trace id, unique ids."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from triggerfish._domain import records
from triggerfish._domain.traces import run_span_id
from triggerfish.engine.traces import build_trace

T0 = datetime(2026, 1, 1)
ATTEMPT_STATUSES = ["COMPLETED", "FAILED", "CRASHED", "SUSPENDED", "EXECUTING", "RELEASED"]
KINDS = ["step", "wait", "token.wait", "event.wait", "child", "batch", "token.create"]


def _run(run_id: str, context: str | None, parent: str | None) -> records.RunRecord:
    fields: dict[str, Any] = {f.name: None for f in dataclasses.fields(records.RunRecord)}
    fields.update(
        id=run_id,
        environment_id="env",
        task_identifier="t",
        queue_name="task/t",
        status="COMPLETED",
        created_at=T0,
        finished_at=T0 + timedelta(seconds=100),
        attempt_count=1,
        trace_context=context,
        parent_run_id=parent,
        root_run_id=parent,
    )
    return records.RunRecord(**fields)


attempts_st = st.lists(
    st.tuples(st.sampled_from(ATTEMPT_STATUSES), st.integers(0, 50), st.integers(0, 50)),
    max_size=5,
)
entries_st = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.sampled_from(["OK", "ERROR", "RETRYING", "PENDING"]),
        st.integers(0, 100),
        st.integers(0, 4),
    ),
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(
    attempts_st,
    entries_st,
    st.sampled_from([None, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "junk"]),
    st.sampled_from([None, "run_parent"]),
)
def test_a_trace_is_one_tree_in_one_trace(
    attempts: list[tuple[str, int, int]],
    entries: list[tuple[str, str, int, int]],
    context: str | None,
    parent: str | None,
) -> None:
    run = _run("run_x", context, parent)
    attempt_records = [
        records.AttemptRecord(
            id=f"attempt_{i}",
            run_id="run_x",
            number=i + 1,
            status=status,
            worker_id=None,
            version=None,
            created_at=T0 + timedelta(seconds=start),
            started_at=T0 + timedelta(seconds=start),
            finished_at=T0 + timedelta(seconds=start + length),
            error={"name": "E", "message": "m"} if status == "FAILED" else None,
        )
        for i, (status, start, length) in enumerate(attempts)
    ]
    journal = [
        records.JournalRecord(
            run_id="run_x",
            seq=seq,
            kind=kind,
            name="n",
            status=status,
            result=None,
            error={"name": "E", "message": "m"} if status in ("ERROR", "RETRYING") else None,
            result_blob=False,
            failures=failures,
            started_at=T0 + timedelta(seconds=at),
            finished_at=T0 + timedelta(seconds=at + 1) if status in ("OK", "ERROR") else None,
        )
        for seq, (kind, status, at, failures) in enumerate(entries)
    ]
    trace = build_trace(run, None, attempt_records, journal, [], [], [])
    ids = [s.span_id for s in trace.spans]
    assert len(ids) == len(set(ids)) == 1 + len(attempts) + len(entries)
    assert {s.trace_id for s in trace.spans} == {trace.trace_id}
    root = trace.spans[0]
    assert root.span_id == run_span_id("run_x") and root.parent_span_id == trace.caller_span_id
    assert all(s.parent_span_id in set(ids) for s in trace.spans[1:])
    if context and context != "junk":
        assert trace.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    elif parent:
        assert trace.caller_span_id == run_span_id(parent)
    else:
        assert trace.caller_span_id is None
    retried = sum(1 for s in trace.spans for e in s.events if e.name == "STEP_RETRIED")
    expected = sum(
        (f - 1 if status == "ERROR" else f) if kind == "step" or kind == "token.create" else 0
        for kind, status, _, f in entries
        if f > 0
    )
    assert retried == expected
