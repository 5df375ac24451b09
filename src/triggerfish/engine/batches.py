"""Reading batches: their runs, in item order, and how far they got."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triggerfish._domain.records import BatchRecord
from triggerfish._domain.states import FINAL, RunStatus
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import BatchNotFound
from triggerfish.store import batches as batch_store


@dataclass(frozen=True)
class BatchDetail:
    batch: BatchRecord
    run_ids: list[str]
    counts: dict[str, int]

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.counts.items() if RunStatus(s) in FINAL)

    @property
    def status(self) -> str:
        """``PENDING`` while items are still arriving, ``PROCESSING`` while any run
        is unfinished, then ``COMPLETED``, or ``PARTIAL_FAILED`` when some items
        were refused (:attr:`errors`)."""
        if self.batch.sealed_at is None:
            return "PENDING"
        if self.finished < len(self.run_ids):
            return "PROCESSING"
        return "PARTIAL_FAILED" if self.errors else "COMPLETED"

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The refused items: ``{index, taskIdentifier, error, errorCode}``."""
        return list(self.batch.errors or [])


class Batches:
    def __init__(self, res: EngineResources) -> None:
        self.res = res

    async def retrieve(self, env_id: str, batch_id: str) -> BatchDetail:
        async with self.res.db.read() as conn:
            batch = await batch_store.get(conn, env_id, batch_id)
            if batch is None:
                raise BatchNotFound(batch_id)
            ids = await batch_store.run_ids(conn, batch_id)
            counts = await batch_store.status_counts(conn, batch_id)
        return BatchDetail(batch, ids, counts)
