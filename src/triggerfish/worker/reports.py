"""Reporting started and finished attempts in batches (group commit on the server).

Every start and every finished attempt is queued here and its reporter waits
for the answer. One request is in flight at a time; whatever is queued
meanwhile goes out with the next one, so under load the completion of one run
and the start of the next share a request and a transaction, while an idle
worker still reports each at once. A batch also claims the worker's next runs
when it has room (the ``claim`` hook), so a busy worker needs one request per
run; the worker's long poll is only for when it has nothing to report.

While work keeps coming (the last batch claimed runs), a batch waits ``linger``
seconds (the server names it when the worker registers) before it goes, so
the attempts finishing meanwhile share its request and its transaction: a
worker fed one run at a time would otherwise make an exchange, and the server
a commit, per run. Once a claim comes back empty the queue is drained, and
the next report goes at once (an idle worker reports, then long-polls,
without delay).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from triggerfish.worker.api_client import (
    ClaimedRun,
    ClaimRequest,
    CompletionReport,
    ReportAnswer,
    StaleReport,
    StartReport,
    WorkerApi,
)

#: items sent in one request at most, per kind (the server accepts up to 500)
MAX_BATCH = 200

_Item = TypeVar("_Item", StartReport, CompletionReport)


@dataclass
class _Pending(Generic[_Item]):
    item: _Item
    answer: asyncio.Future[ReportAnswer]


#: asks the worker what to claim along with a batch that reports ``n`` finished
#: attempts, or None to claim nothing
ClaimHook = Callable[[int], ClaimRequest | None]
#: hands the worker the runs claimed along with a batch
ClaimedHook = Callable[[list[ClaimedRun]], None]


class Reporter:
    def __init__(
        self,
        api: WorkerApi,
        give_up_after: Callable[[], float],
        *,
        claim: ClaimHook | None = None,
        claimed: ClaimedHook | None = None,
        linger: float = 0.0,
    ) -> None:
        self._api = api
        self._give_up_after = give_up_after
        self._claim = claim
        self._claimed = claimed
        self._starts: list[_Pending[StartReport]] = []
        self._completions: list[_Pending[CompletionReport]] = []
        self._sender: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        #: seconds a batch waits for company while work keeps coming
        self.linger = linger
        self._flowing = False  # the last claim brought runs: more are on their way
        #: seconds a report takes to be answered (moving average)
        self.round_trip = 0.0

    @property
    def active(self) -> bool:
        """Whether a batch is queued or in flight (it claims the worker's next runs)."""
        return not self._idle.is_set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def start(self, run_id: str, attempt_id: str) -> ReportAnswer:
        """Report that a claimed attempt begins (raises ``StaleReport`` if it may not)."""
        return await self._report(self._starts, StartReport(run_id, attempt_id))

    async def complete(self, report: CompletionReport) -> ReportAnswer:
        """Report a finished attempt; returns the server's answer for it.

        Raises ``StaleReport`` when the attempt is no longer current, and the
        request's error when the server could not be reached in time.
        """
        return await self._report(self._completions, report)

    async def _report(self, queue: list[_Pending[_Item]], item: _Item) -> ReportAnswer:
        answer: asyncio.Future[ReportAnswer] = asyncio.get_running_loop().create_future()
        queue.append(_Pending(item, answer))
        if self._sender is None or self._sender.done():
            self._idle.clear()
            self._sender = asyncio.create_task(self._send_all())
        return await answer

    async def _send_all(self) -> None:
        try:
            if self._flowing and self.linger > 0:
                await asyncio.sleep(self.linger)
            while self._starts or self._completions:
                await self._send_batch()
        finally:
            self._idle.set()

    async def _send_batch(self) -> None:
        starts, self._starts = self._starts[:MAX_BATCH], self._starts[MAX_BATCH:]
        completions = self._completions[:MAX_BATCH]
        self._completions = self._completions[MAX_BATCH:]
        claim = self._claim(len(completions)) if self._claim else None
        sent = time.monotonic()
        try:
            answers = await self._api.reports(
                [p.item for p in starts],
                [p.item for p in completions],
                claim,
                give_up_after=self._give_up_after(),
            )
        except Exception as exc:  # every reporter in the batch hears of it
            for future in [p.answer for p in starts] + [p.answer for p in completions]:
                if not future.done():
                    future.set_exception(exc)
            if claim is not None and self._claimed is not None:
                self._claimed([])
            return
        self.round_trip += 0.3 * (time.monotonic() - sent - self.round_trip)
        if claim is not None:
            self._flowing = bool(answers.runs)
            if self._claimed is not None:
                self._claimed(answers.runs)
        for start, answer in zip(starts, answers.starts, strict=True):
            _settle(start, answer)
        for completion, answer in zip(completions, answers.completions, strict=True):
            _settle(completion, answer)


def _settle(pending: _Pending[_Item], answer: ReportAnswer) -> None:
    if pending.answer.done():
        return
    if answer.stale:
        attempt = pending.item.attempt_id
        pending.answer.set_exception(StaleReport(f"attempt {attempt} is no longer current"))
    else:
        pending.answer.set_result(answer)
