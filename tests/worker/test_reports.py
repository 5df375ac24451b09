"""The worker's report batches: what shares a request, and when a batch waits.

The server side of a batch is tested with the worker API; here the reporter
talks to a recording stand-in for it, which answers each item and hands out
the runs a test scripts for the claims.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from triggerfish._domain.attempts import EnvironmentRef, Job, Succeeded
from triggerfish.worker.api_client import (
    ClaimedRun,
    ClaimRequest,
    CompletionReport,
    ReportAnswer,
    ReportsAnswer,
    StaleReport,
    StartReport,
)
from triggerfish.worker.reports import Reporter


class RecordingApi:
    """Answers ``reports`` calls like the server, and remembers each request."""

    def __init__(self, claims: list[list[ClaimedRun]], stale: frozenset[str] = frozenset()) -> None:
        self.requests: list[tuple[list[str], list[str], ClaimRequest | None]] = []
        self._claims = claims  # the runs each claiming request gets, in order
        self._stale = stale  # attempts the server no longer takes reports for

    async def reports(
        self,
        starts: Sequence[StartReport],
        completions: Sequence[CompletionReport],
        claim: ClaimRequest | None = None,
        *,
        give_up_after: float,
    ) -> ReportsAnswer:
        started = [s.attempt_id for s in starts]
        done = [c.attempt_id for c in completions]
        self.requests.append((started, done, claim))
        await asyncio.sleep(0)  # an answer comes back later than the request goes out
        runs = self._claims.pop(0) if claim is not None and self._claims else []
        return ReportsAnswer(
            starts=[self._answer(a, "EXECUTING") for a in started],
            completions=[self._answer(a, "COMPLETED") for a in done],
            runs=runs,
        )

    def _answer(self, attempt_id: str, status: str) -> ReportAnswer:
        if attempt_id in self._stale:
            return ReportAnswer(attempt_id, stale=True)
        return ReportAnswer(attempt_id, stale=False, status=status)

    def completed(self) -> list[list[str]]:
        return [done for _, done, _ in self.requests]


def _reporter(api: RecordingApi, linger: float, taken: list[ClaimedRun]) -> Reporter:
    return Reporter(
        api,  # type: ignore[arg-type]
        lambda: 30.0,
        claim=lambda finished: ClaimRequest("w", max=2, start=2),
        claimed=taken.extend,
        linger=linger,
    )


def _done(attempt: str) -> CompletionReport:
    return CompletionReport(f"run-{attempt}", attempt, Succeeded(None))


def _claimed(attempt: str) -> ClaimedRun:
    job = Job(
        run_id=f"run-{attempt}",
        attempt_id=attempt,
        attempt_number=1,
        task_id="t",
        payload=None,
        tags=(),
        environment=EnvironmentRef("env_1", "dev"),
        machine="small-1x",
        max_duration=None,
    )
    return ClaimedRun(job, started=True)


async def test_an_idle_worker_reports_at_once() -> None:
    api = RecordingApi(claims=[])
    reporter = _reporter(api, linger=30.0, taken=[])
    # nothing was claimed before: the queue is drained, so the report cannot wait
    answer = await asyncio.wait_for(reporter.complete(_done("a1")), 5)
    assert answer.status == "COMPLETED"
    assert api.completed() == [["a1"]]


async def test_while_work_keeps_coming_reports_share_a_request() -> None:
    run = _claimed("a9")
    api = RecordingApi(claims=[[run], [], []])
    taken: list[ClaimedRun] = []
    reporter = _reporter(api, linger=0.5, taken=taken)
    await reporter.complete(_done("a1"))  # its claim brings a run: work is flowing
    assert taken == [run]

    second = asyncio.create_task(reporter.complete(_done("a2")))
    await asyncio.sleep(0.05)  # well inside the linger: the first is still waiting
    assert not second.done() and len(api.requests) == 1
    third = asyncio.create_task(reporter.complete(_done("a3")))
    await asyncio.wait_for(asyncio.gather(second, third), 5)

    assert api.completed() == [["a1"], ["a2", "a3"]]  # one request, one commit for both
    # that claim came back empty: the queue is drained, and the next report goes at once
    await asyncio.wait_for(reporter.complete(_done("a4")), 0.4)
    assert api.completed()[-1] == ["a4"]


async def test_without_a_linger_each_report_goes_when_the_last_is_answered() -> None:
    api = RecordingApi(claims=[[_claimed("a9")], [], []])
    reporter = _reporter(api, linger=0.0, taken=[])
    await reporter.complete(_done("a1"))
    await reporter.complete(_done("a2"))
    await reporter.complete(_done("a3"))
    assert api.completed() == [["a1"], ["a2"], ["a3"]]


async def test_starts_and_completions_share_a_batch_and_a_stale_one_fails_alone() -> None:
    api = RecordingApi(claims=[], stale=frozenset({"a2"}))
    reporter = Reporter(api, lambda: 30.0)  # type: ignore[arg-type]
    started = asyncio.create_task(reporter.start("run-a3", "a3"))
    done = asyncio.create_task(reporter.complete(_done("a1")))
    refused = asyncio.create_task(reporter.complete(_done("a2")))
    assert (await asyncio.wait_for(started, 5)).status == "EXECUTING"
    assert (await done).status == "COMPLETED"
    with pytest.raises(StaleReport, match="a2 is no longer current"):
        await refused
    assert api.requests == [(["a3"], ["a1", "a2"], None)]
