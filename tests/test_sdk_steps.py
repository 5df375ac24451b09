"""``step.run`` inside the replay runtime with a recording transport (no server):
its signature, ``ctx.step``, and the history of tries it journals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triggerfish import Context, StepFailedError, retry, step
from triggerfish.sdk import _durable
from triggerfish.sdk._context import AttemptInfo, EnvironmentInfo, MachineInfo, RunInfo, TaskInfo
from triggerfish.sdk._durable import DurableRun

CTX = Context(
    run=RunInfo(id="run_1"),
    task=TaskInfo(id="t"),
    attempt=AttemptInfo(id="att_1", number=1),
    environment=EnvironmentInfo(id="env", slug="dev"),
    machine=MachineInfo(name="small-1x", memory_mb=512),
)


class Recorder:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __call__(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        assert op == "journal"
        self.entries.append(dict(body))
        return {"ok": True}


def _durable_run(recorder: Recorder, journal: dict[int, dict[str, Any]] | None = None) -> Any:
    run = DurableRun(
        run_id="run_1",
        attempt_id="att_1",
        task_id="t",
        retry=retry(max_attempts=1),
        is_async=False,
        transport=recorder,
        loop=None,
        journal=journal or {},
    )
    return run


def _inside(run: DurableRun, fn: Any) -> Any:
    token = _durable.activate(run)
    try:
        return fn()
    finally:
        _durable.deactivate(token)


def test_the_key_is_positional_only_and_name_is_a_display_field() -> None:
    recorder = Recorder()
    run = _durable_run(recorder)
    with pytest.raises(TypeError):
        _inside(run, lambda: step.run(key="k", fn=lambda: 1))  # type: ignore[call-arg]
    out = _inside(run, lambda: step.run("k", lambda x: x + 1, 1, name="Add one", icon="plus"))
    assert out == 2
    [entry] = recorder.entries
    assert entry["name"] == "k" and entry["display"] == {"name": "Add one", "icon": "plus"}


def test_display_fields_are_checked_before_the_step_runs() -> None:
    run = _durable_run(Recorder())
    with pytest.raises(TypeError, match="properties"):
        _inside(run, lambda: step.run("k", lambda: 1, properties={1: "x"}))  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="icon"):
        _inside(run, lambda: step.run("k", lambda: 1, icon=""))


def test_ctx_step_exists_only_inside_a_step() -> None:
    with pytest.raises(RuntimeError, match=r"inside a step\.run"):
        _ = CTX.step
    run = _durable_run(Recorder())
    info = _inside(run, lambda: step.run("k", lambda: [CTX.step.key, CTX.step.attempt], name="N"))
    assert info == ["k", 1]


def test_an_async_step_sees_its_try_number() -> None:
    recorder = Recorder()
    run = _durable_run(recorder)
    run.is_async = True
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(CTX.step.attempt)
        if CTX.step.attempt < 2:
            raise RuntimeError("once")
        return "ok"

    async def body() -> Any:
        return await step.run("flaky", flaky, retry=retry(max_attempts=3, min_delay=0, jitter=0))

    loop = asyncio.new_event_loop()
    try:
        assert _inside(run, lambda: loop.run_until_complete(body())) == "ok"
    finally:
        loop.close()
    assert attempts == [1, 2]
    assert [t["number"] for t in recorder.entries[-1]["tries"]] == [1]


@settings(max_examples=60, deadline=None)
@given(
    fails=st.integers(0, 6),
    max_attempts=st.integers(1, 5),
    crash_after=st.one_of(st.none(), st.integers(1, 5)),
)
def test_tries_are_numbered_once_each_across_a_crash(
    fails: int, max_attempts: int, crash_after: int | None
) -> None:
    """A step failing ``fails`` times: its try numbers count 1, 2, … with no gap or
    repeat, also when the process dies after ``crash_after`` failed tries and the
    run replays from the journal; the last entry keeps every failed try."""
    policy = retry(max_attempts=max_attempts, min_delay=0, max_delay=0, jitter=0)
    seen: list[int] = []

    class Crash(BaseException):
        pass

    def body(crash: bool) -> Any:
        def fn() -> str:
            number = CTX.step.attempt
            if crash and crash_after is not None and number == crash_after + 1:
                raise Crash
            seen.append(number)
            if number <= fails:
                raise RuntimeError(f"fail {number}")
            return "done"

        return step.run("s", fn, retry=policy)

    recorder = Recorder()
    journal: dict[int, dict[str, Any]] = {}
    outcome: Any
    try:
        outcome = _inside(_durable_run(recorder, journal), lambda: body(crash=True))
    except Crash:  # a new process replays the journal as the server kept it
        kept = {0: dict(recorder.entries[-1])} if recorder.entries else {}
        try:
            outcome = _inside(_durable_run(recorder, kept), lambda: body(crash=False))
        except StepFailedError as exc:
            outcome = exc
    except StepFailedError as exc:
        outcome = exc
    ran = min(fails + 1, max_attempts)
    assert seen == list(range(1, ran + 1))
    last = recorder.entries[-1]
    failed = min(fails, max_attempts)
    assert [t["number"] for t in last.get("tries", [])] == list(range(1, failed + 1))
    if fails < max_attempts:
        assert outcome == "done" and last["status"] == "OK"
    else:
        assert isinstance(outcome, StepFailedError) and last["status"] == "ERROR"
