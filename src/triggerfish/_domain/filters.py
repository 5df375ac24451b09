"""Filters the API builds from a request and the store turns into a query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list shows; an empty field does not filter.

    Example::

        RunFilter(statuses=["QUEUED", "EXECUTING"], tags=["customer-42"])
    """

    statuses: Sequence[str] = ()
    task_ids: Sequence[str] = ()
    tags: Sequence[str] = ()
    versions: Sequence[str] = ()
    queues: Sequence[str] = ()
    machines: Sequence[str] = ()
    batch_id: str | None = None
    #: runs a schedule started: their idempotency keys begin with this prefix
    idempotency_prefix: str | None = None
    schedule_id: str | None = None
    is_test: bool | None = None
    #: naive UTC, as stored
    created_from: datetime | None = None
    created_to: datetime | None = None
