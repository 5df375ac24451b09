"""The limits a claim must respect, as one value the claim path and the
"why is it not running" explanation both consult.

Order of checks (the first that fails is the reason a run waits): queue
paused, environment at its limit, queue at its limit, concurrency key at its
limit, queue rate limited.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from triggerfish.store.queues import QueueRules


class Blocked(enum.StrEnum):
    #: the queue is paused: it accepts runs and starts none
    QUEUE_PAUSED = "QUEUE_PAUSED"
    #: the environment-wide concurrency limit is reached
    ENVIRONMENT_LIMIT = "ENVIRONMENT_LIMIT"
    #: the queue's concurrency limit is reached
    QUEUE_LIMIT = "QUEUE_LIMIT"
    #: the run's concurrency key holds all the slots it may
    CONCURRENCY_KEY_LIMIT = "CONCURRENCY_KEY_LIMIT"
    #: the queue started as many runs as its rate limit allows in the window
    RATE_LIMITED = "RATE_LIMITED"


@dataclass
class Limits:
    """Limits and current usage; :meth:`take` books a slot as a claim proceeds.

    Example::

        limits = Limits(rules, active, env_limit=10, env_active=3)
        if limits.check("emails", "user_1") is None:
            limits.take("emails", "user_1")
    """

    rules: dict[str, QueueRules]
    #: slots held per (queue, concurrency key) for the constrained queues
    active: dict[tuple[str, str | None], int]
    env_limit: int | None = None
    env_active: int = 0
    #: claims inside the current rate window, and the oldest one's time
    rate_used: dict[str, tuple[int, float]] = field(default_factory=dict)
    _queue_active: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for (queue, _key), n in self.active.items():
            self._queue_active[queue] = self._queue_active.get(queue, 0) + n

    def queue_active(self, queue: str) -> int:
        return self._queue_active.get(queue, 0)

    def key_limit(self, rules: QueueRules) -> int | None:
        return rules.key_limit if rules.key_limit is not None else rules.limit

    def env_full(self) -> bool:
        return self.env_limit is not None and self.env_active >= self.env_limit

    def queue_check(self, queue: str) -> Blocked | None:
        """Why no run of ``queue`` may start now, whatever its key; None if some may."""
        rules = self.rules.get(queue)
        if rules is not None and rules.paused:
            return Blocked.QUEUE_PAUSED
        if self.env_full():
            return Blocked.ENVIRONMENT_LIMIT
        if rules is None:
            return None
        if rules.limit is not None and self.queue_active(queue) >= rules.limit:
            return Blocked.QUEUE_LIMIT
        if rules.rate_limited and self.rate_used.get(queue, (0, 0.0))[0] >= (rules.rate_count or 0):
            return Blocked.RATE_LIMITED
        return None

    def check(self, queue: str, key: str | None) -> Blocked | None:
        """Why a run of ``queue`` with ``key`` may not start now; None if it may."""
        reason = self.queue_check(queue)
        if reason is not None or key is None:
            return reason
        rules = self.rules.get(queue)
        cap = self.key_limit(rules) if rules else None
        if cap is not None and self.active.get((queue, key), 0) >= cap:
            return Blocked.CONCURRENCY_KEY_LIMIT
        return None

    def take(self, queue: str, key: str | None) -> None:
        self.env_active += 1
        if queue in self.rules:
            self.active[(queue, key)] = self.active.get((queue, key), 0) + 1
            self._queue_active[queue] = self.queue_active(queue) + 1
            count, oldest = self.rate_used.get(queue, (0, 0.0))
            self.rate_used[queue] = (count + 1, oldest)

    def blocked_queues(self) -> list[str]:
        return [q for q in self.rules if self.queue_check(q) is not None]

    def blocked_keys(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for (queue, key), _n in self.active.items():
            if key is not None and self.check(queue, key) is Blocked.CONCURRENCY_KEY_LIMIT:
                out.append((queue, key))
        return out

    def rate_free_at(self, queue: str) -> float | None:
        """When the rate window of a rate-limited queue next has room (epoch s)."""
        rules = self.rules.get(queue)
        used = self.rate_used.get(queue)
        if rules is None or not rules.rate_limited or used is None:
            return None
        return used[1] + (rules.rate_period or 0.0)
