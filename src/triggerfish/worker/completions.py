"""Reporting finished attempts in batches (group commit on the server).

Every finished attempt is queued here and its reporter waits for the answer.
One request is in flight at a time; whatever finishes meanwhile goes out with
the next one, so under load many reports share one request and one
transaction, while an idle worker still reports each run at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from triggerfish.worker.api_client import StaleReport, WorkerApi

#: reports sent in one request at most (the server accepts up to 500)
MAX_BATCH = 200


@dataclass
class _Pending:
    attempt_id: str
    body: dict[str, Any]
    answer: asyncio.Future[dict[str, Any]]


class CompletionReporter:
    def __init__(self, api: WorkerApi, give_up_after: Callable[[], float]) -> None:
        self._api = api
        self._give_up_after = give_up_after
        self._pending: list[_Pending] = []
        self._sender: asyncio.Task[None] | None = None

    async def report(self, attempt_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Report one finished attempt; returns the server's answer for it.

        Raises ``StaleReport`` when the attempt is no longer current, and the
        request's error when the server could not be reached in time.
        """
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(attempt_id, body, answer))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all())
        return await answer

    async def _send_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self._api.completions(
                    [{"attempt_id": p.attempt_id, **p.body} for p in batch],
                    give_up_after=self._give_up_after(),
                )
            except Exception as exc:  # every reporter in the batch hears of it
                for pending in batch:
                    if not pending.answer.done():
                        pending.answer.set_exception(exc)
                continue
            for pending, result in zip(batch, results, strict=True):
                if pending.answer.done():
                    continue
                if result.get("stale"):
                    pending.answer.set_exception(
                        StaleReport(f"attempt {pending.attempt_id} is no longer current")
                    )
                else:
                    pending.answer.set_result(result)
