"""Named queues that tasks share, with optional concurrency and rate limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triggerfish._durations import parse_duration


@dataclass(frozen=True)
class Queue:
    """A named queue. Tasks on the same queue share its limits.

    - ``concurrency_limit``: runs of the queue holding a worker slot at once.
    - ``concurrency_key_limit``: slots each ``concurrency_key`` may hold (default:
      the queue's limit); keys are served fairly, so one tenant cannot starve others.
    - ``rate_limit``: ``(count, period)``, at most ``count`` starts in any
      ``period`` (seconds or a duration like ``"1m"``); further starts wait.

    Limits can be changed and the queue paused at run time (API, CLI) without a
    redeploy; a run-time override wins until it is reset.

    Example::

        emails = queue("emails", concurrency_limit=5, rate_limit=(100, "1m"))

        @task(id="send-welcome", queue=emails)
        def send_welcome(payload: dict) -> None: ...
    """

    name: str
    concurrency_limit: int | None = None
    concurrency_key_limit: int | None = None
    rate_limit: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 128:
            raise ValueError("queue: name must be 1 to 128 characters")
        if self.concurrency_limit is not None and self.concurrency_limit < 0:
            raise ValueError(f"queue {self.name!r}: concurrency_limit cannot be negative")
        if self.concurrency_key_limit is not None and self.concurrency_key_limit < 0:
            raise ValueError(f"queue {self.name!r}: concurrency_key_limit cannot be negative")
        if self.rate_limit is not None:
            count, period = self.rate_limit
            try:
                seconds = parse_duration(period)
            except ValueError as exc:
                raise ValueError(f"queue {self.name!r}: rate_limit period: {exc}") from None
            if not isinstance(count, int) or count < 1 or seconds <= 0:
                raise ValueError(
                    f"queue {self.name!r}: rate_limit must be (count >= 1, period > 0), "
                    f"e.g. (100, '1m')"
                )
            object.__setattr__(self, "rate_limit", (count, seconds))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency_limit": self.concurrency_limit,
            "concurrency_key_limit": self.concurrency_key_limit,
            "rate_limit": list(self.rate_limit) if self.rate_limit else None,
        }


def queue(
    name: str,
    concurrency_limit: int | None = None,
    *,
    concurrency_key_limit: int | None = None,
    rate_limit: tuple[int, str | float] | None = None,
) -> Queue:
    """Declare a queue; see :class:`Queue`.

    Example: ``queue("llm", concurrency_limit=4, rate_limit=(60, "1m"))``
    """
    return Queue(name, concurrency_limit, concurrency_key_limit, rate_limit)  # type: ignore[arg-type]
