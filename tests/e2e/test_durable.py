"""Durable execution with real processes: crash replay, journaled steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import support
from tests.conftest import BACKENDS
from tests.e2e.conftest import Stack

both = pytest.mark.parametrize("fresh_stack", BACKENDS, indirect=True)


def _count(marks: Path, name: str) -> int:
    path = marks / name
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize(
    ("fresh_stack", "task_id"),
    [("sqlite", "five-steps"), ("postgresql", "five-steps"), ("sqlite", "five-steps-async")],
    indirect=["fresh_stack"],
)
def test_sigkill_during_step_4_replays_steps_1_to_3_without_running_them_again(
    fresh_stack: Stack, tmp_path: Path, task_id: str
) -> None:
    first = fresh_stack.worker(concurrency=1, name="first")
    marks = tmp_path / "marks"
    handle = fresh_stack.client.tasks.trigger(task_id, {"marks": str(marks)})
    support.wait_for(lambda: _count(marks, "step-4") == 1, what="step 4 to start")
    second = fresh_stack.worker(concurrency=1, name="second")
    with support.processes_stopped(first, second):
        first.kill_hard()
        (marks / "go").touch()
        run = fresh_stack.client.runs.poll(handle.id, timeout=60, interval=0.1)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"results": [10, 20, 30, 40, 50], "attempt": 2}
    # the body ran twice; steps 1-3 once each; step 4 was cut short and ran again
    assert _count(marks, "body") == 2
    assert [_count(marks, f"step-{i}") for i in range(1, 6)] == [1, 1, 1, 2, 1]
