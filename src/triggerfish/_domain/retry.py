"""Retry policies: how many attempts a run gets and how long to wait between them."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    The delay before attempt ``n + 1`` is ``min_delay * factor ** (n - 1)``, capped
    at ``max_delay``, then spread by up to ``jitter`` (a fraction) either way.
    Delays are seconds.
    """

    max_attempts: int = 3
    factor: float = 2.0
    min_delay: float = 1.0
    max_delay: float = 30.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("retry: max_attempts must be at least 1")
        if self.factor < 1:
            raise ValueError("retry: factor must be at least 1")
        if self.min_delay < 0 or self.max_delay < self.min_delay:
            raise ValueError("retry: need 0 <= min_delay <= max_delay")
        if not 0 <= self.jitter <= 1:
            raise ValueError("retry: jitter is a fraction between 0 and 1")

    def delay_after(self, attempt_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt_number`` (1-based)."""
        base = min(self.max_delay, self.min_delay * self.factor ** (attempt_number - 1))
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> RetryPolicy:
        return cls(**data) if data else cls()


def retry(
    max_attempts: int = 3,
    factor: float = 2.0,
    min_delay: float = 1.0,
    max_delay: float = 30.0,
    jitter: float = 0.1,
) -> RetryPolicy:
    """A retry policy for ``@task(retry=...)``.

    Example::

        @task(id="sync", retry=retry(max_attempts=5, factor=2, min_delay=1, max_delay=60))
        def sync(payload: dict) -> None: ...
    """
    return RetryPolicy(max_attempts, factor, min_delay, max_delay, jitter)
