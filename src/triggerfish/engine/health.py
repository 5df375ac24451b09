"""Whether the store answers, as the maintenance loop sees it, and the lease grace after an outage.

During a database outage no heartbeat lands, so every lease runs out. When the
store comes back, the workers' next heartbeats and their retried reports need
a moment to land: until one heartbeat timeout has passed since the
reconnection, a lease that ran out during the outage is not reclaimed
(DECISIONS.md, "Leases after a database outage"). The grace is a cutoff the
reclaim's guarded transition checks (``lease_expires_at < cutoff``), so a lease
renewed meanwhile is never reclaimed.

It also logs one line per change of state, not a traceback per sweep::

    database unreachable since 2026-03-08T07:00:00.000Z (StoreUnavailable: ...)
    database back after 40 s; expired leases get 30 s of grace

Example::

    health = StoreHealth()
    health.went_down(now=100.0, why="refused")
    health.came_back(now=140.0)
    health.lease_cutoff(now=150.0, timeout=30.0)  # 100.0: leases that ran out before it
    health.lease_cutoff(now=171.0, timeout=30.0)  # 171.0: the grace is over
"""

from __future__ import annotations

import logging

from triggerfish._domain.times import iso_from_epoch

log = logging.getLogger("triggerfish.store.health")


class StoreHealth:
    """The store's reachability over time; owned by one engine (see the module doc)."""

    def __init__(self) -> None:
        #: when the current outage began (None while the store answers)
        self.down_since: float | None = None
        #: the last outage: (began, store back)
        self.last_outage: tuple[float, float] | None = None

    @property
    def is_down(self) -> bool:
        return self.down_since is not None

    def went_down(self, now: float, why: str) -> None:
        """A store call failed for want of a connection (logged once per outage)."""
        if self.down_since is None:
            self.down_since = now
            log.error("database unreachable since %s (%s)", iso_from_epoch(now), why)

    def came_back(self, now: float, grace: float = 0.0) -> None:
        """A store call succeeded after an outage (logged once)."""
        if self.down_since is None:
            return
        began, self.down_since = self.down_since, None
        self.last_outage = (began, now)
        log.warning(
            "database back after %.0f s; expired leases get %.0f s of grace", now - began, grace
        )

    def lease_cutoff(self, now: float, timeout: float) -> float:
        """Leases that ran out before this may be reclaimed now.

        ``now``, except during the grace after an outage (one ``timeout`` from
        the reconnection) and during an outage: then only leases that ran out
        before the outage began.
        """
        if self.down_since is not None:
            return self.down_since
        if self.last_outage is not None:
            began, back = self.last_outage
            if now < back + timeout:
                return min(now, began)
        return now
