"""What every engine module shares: the database, a clock, the wake-up notifier, settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from triggerfish._domain.times import to_datetime
from triggerfish.config import ServerSettings
from triggerfish.engine.health import StoreHealth
from triggerfish.engine.keyring import Keyring
from triggerfish.store.db import Database
from triggerfish.store.notify import Notifier


class Clock:
    """Wall-clock time. Tests swap in :class:`ManualClock` to skip time."""

    def now(self) -> float:
        return time.time()

    def utcnow(self) -> datetime:
        return to_datetime(self.now())


class ManualClock(Clock):
    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float = 0, *, minutes: float = 0, hours: float = 0) -> None:
        self._now += seconds + minutes * 60 + hours * 3600


@dataclass
class EngineResources:
    db: Database
    clock: Clock
    notifier: Notifier
    settings: ServerSettings
    keyring: Keyring = field(default_factory=Keyring.ephemeral)
    #: the store's reachability and the lease grace after an outage (engine/health.py)
    health: StoreHealth = field(default_factory=StoreHealth)
    #: environments whose last claim here met a concurrency limit or a constrained
    #: queue. A hint (any server may change limits): it sends their claims straight
    #: to the general path, and wakes their parked claims when a slot frees.
    constrained: set[str] = field(default_factory=set)

    async def slot_freed(self, env_id: str) -> None:
        """A run of ``env_id`` left ``DEQUEUED``/``EXECUTING``. Where limits apply, a
        run held back for want of that slot may be claimed now, and nothing was
        queued to wake the claims parked meanwhile: wake them, rather than leave
        them to their re-check a ``maintenance_interval`` later."""
        if env_id in self.constrained:
            await self.notifier.notify(env_id)
