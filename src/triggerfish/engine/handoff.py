"""Hand-offs: a trigger gives its run straight to a worker's parked claim.

An idle worker long-polls: its claim finds nothing and waits to be woken. The
usual way on is two commits and a hop through the event loop: the trigger
inserts its run and wakes the claim, which then claims the run in a statement
of its own. When a claim is parked on this server for the very task being
triggered, the trigger can instead insert the run already claimed for that
worker (``store.runs.insert_and_hand_off_alone``): one statement, and
the run is on its way to the worker as soon as it is stored.

The statement decides in the database whether the hand-off is allowed, in the
same snapshot as the insert, exactly when the claim itself would have taken
the run first: nothing constrains the environment (no environment limit; no
limited, rate-limited or paused queue) and no older run is queued for the
worker. Otherwise the run is inserted QUEUED and the parked claim is woken as
usual. A hand-off is therefore only a shortcut of the claim, never a second
way past a limit.

Only PostgreSQL parks claims for hand-offs (its trigger and claim are both one
statement there); on SQLite every run goes through the claim.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from triggerfish.engine.dequeue import WorkerIdentity

log = logging.getLogger(__name__)

#: puts back in the queue the runs handed to a claim that was no longer waiting
Orphaned = Callable[[Sequence[Any]], Awaitable[None]]


@dataclass(eq=False)
class ParkedClaim:
    """A worker's claim waiting for work on this server."""

    worker: WorkerIdentity
    #: whether a run handed over starts at once (EXECUTING: the worker has a free
    #: slot for it) or waits for the worker's start report (DEQUEUED)
    start: bool
    orphaned: Orphaned
    #: the handed-over runs, once a trigger has stored them
    delivered: asyncio.Future[list[Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    #: set once the claim has stopped waiting: woken, timed out, its caller gone,
    #: or with the runs handed over
    left: asyncio.Event = field(default_factory=asyncio.Event)


class Handoffs:
    """The claims parked on this server, by environment, oldest first.

    Example::

        parked = handoffs.park(worker, start=True, orphaned=release)
        ...                                   # a trigger: handoffs.take(env, "send-email")
        handoffs.leave(parked)                # the claim stops waiting
    """

    def __init__(self) -> None:
        self._parked: dict[str, list[ParkedClaim]] = {}

    def park(self, worker: WorkerIdentity, *, start: bool, orphaned: Orphaned) -> ParkedClaim:
        """Offer a waiting claim to triggers of the worker's tasks."""
        parked = ParkedClaim(worker, start, orphaned)
        self._parked.setdefault(worker.environment_id, []).append(parked)
        return parked

    def leave(self, parked: ParkedClaim) -> None:
        """The claim stops waiting: it is offered no more, and a hand-off already
        under way gives its run back to the queue (``ParkedClaim.orphaned``)."""
        parked.left.set()
        self._remove(parked)

    def take(self, env_id: str, task_id: str) -> ParkedClaim | None:
        """The oldest parked claim that serves ``task_id``, no longer offered to others.

        Hand it its run with :meth:`deliver`, or offer it again with :meth:`give_back`.
        """
        for parked in self._parked.get(env_id, ()):
            if task_id in parked.worker.task_ids:
                self._remove(parked)
                return parked
        return None

    def give_back(self, parked: ParkedClaim) -> None:
        """Offer a taken claim again (the trigger did not hand it its run)."""
        if not parked.left.is_set():
            self._parked.setdefault(parked.worker.environment_id, []).append(parked)

    async def deliver(self, parked: ParkedClaim, rows: list[Any]) -> None:
        """Hand a taken claim the runs stored as claimed for it, and return once the
        claim has them; if it has stopped waiting meanwhile, they go back to the queue.

        Returning only then lets the claim's caller send the runs on (to the worker)
        before the trigger answers its own caller: the run, not the answer, is
        what someone waits for.
        """
        if parked.left.is_set() or parked.delivered.done():
            try:
                await parked.orphaned(rows)
            except Exception:  # its lease runs out and the run is reclaimed anyway
                log.exception("could not requeue a run handed to a claim that left")
            return
        parked.delivered.set_result(rows)
        await parked.left.wait()

    def parked_count(self, env_id: str) -> int:
        return len(self._parked.get(env_id, ()))

    def _remove(self, parked: ParkedClaim) -> None:
        waiting = self._parked.get(parked.worker.environment_id)
        if waiting and parked in waiting:
            waiting.remove(parked)
            if not waiting:
                del self._parked[parked.worker.environment_id]
