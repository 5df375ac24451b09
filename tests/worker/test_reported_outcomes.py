"""What the worker tells the server about each way an attempt can end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from triggerfish._domain.attempts import (
    Abandoned,
    Decision,
    ErrorInfo,
    Failed,
    Succeeded,
    Suspended,
)
from triggerfish.worker.discovery import ProjectConfig
from triggerfish.worker.supervisor import Worker, WorkerOptions

PROJECT = Path(__file__).resolve().parent.parent / "pool_project"


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    # never started: nothing here reaches the (absent) server
    worker = Worker(ProjectConfig.load(PROJECT), WorkerOptions("http://127.0.0.1:9", "tr_dev_x"))
    try:
        yield worker
    finally:
        await worker.api.close()


async def test_finished_attempts_are_reported_as_they_ended(worker: Worker) -> None:
    failed = Failed(ErrorInfo("ValueError", "bad", "trace", "USER"), Decision("retry", 3))
    assert worker._to_report("att_1", Succeeded({"n": 1})) == Succeeded({"n": 1})
    assert worker._to_report("att_1", failed) == failed


async def test_nothing_is_reported_for_an_attempt_the_server_has_moved_past(
    worker: Worker,
) -> None:
    assert worker._to_report("att_1", Abandoned("attempt att_1 is no longer current")) is None
    worker._suspended.add("att_2")  # the server accepted its wait and parked the run
    assert worker._to_report("att_2", Suspended()) is None


async def test_a_suspension_without_an_accepted_wait_is_a_failure(worker: Worker) -> None:
    reported = worker._to_report("att_3", Suspended())
    assert isinstance(reported, Failed) and reported.decision is None
    assert (reported.error.name, reported.error.kind) == ("RunSuspended", "USER")
    assert "never accepted a wait" in reported.error.message
