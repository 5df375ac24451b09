"""Named queues that tasks share, with an optional concurrency limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Queue:
    """A named queue. Tasks on the same queue share its concurrency limit.

    Example::

        emails = queue("emails", concurrency_limit=5)

        @task(id="send-welcome", queue=emails)
        def send_welcome(payload: dict) -> None: ...
    """

    name: str
    concurrency_limit: int | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 128:
            raise ValueError("queue: name must be 1 to 128 characters")
        if self.concurrency_limit is not None and self.concurrency_limit < 0:
            raise ValueError(f"queue {self.name!r}: concurrency_limit cannot be negative")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "concurrency_limit": self.concurrency_limit}


def queue(name: str, concurrency_limit: int | None = None) -> Queue:
    return Queue(name, concurrency_limit)
