"""Wake-ups: tell waiting dequeue calls that an environment has new work.

Within one server process an ``asyncio.Event`` per environment is enough
(:class:`Notifier`: SQLite dev mode). With several servers on PostgreSQL the
database's notifier (``store/dialects/postgresql.py``) also sends ``NOTIFY``
after commit and ``LISTEN``s on a dedicated connection, so a run triggered on
server A wakes a worker polling B. ``Database.new_notifier`` picks the one that
fits the database.
"""

from __future__ import annotations

import asyncio


class Notifier:
    """Per-environment wake-up events for long-polling dequeue calls."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._timers: set[asyncio.Task[None]] = set()

    def _event(self, env_id: str) -> asyncio.Event:
        event = self._events.get(env_id)
        if event is None:
            event = self._events[env_id] = asyncio.Event()
        return event

    def listener(self, env_id: str) -> asyncio.Event:
        """The event the next ``notify(env_id)`` sets.

        Take it *before* looking for work, then wait on it, so a notification
        that lands between the look and the wait is not lost.
        """
        return self._event(env_id)

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout``; True if woken."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def alone(self) -> bool:
        """Whether this server is known to be the only one on its store now.

        A plain notifier cannot tell (several processes may share a SQLite
        file), so it says no; the PostgreSQL one counts the listening servers."""
        return False

    def wake_local(self, env_id: str) -> None:
        event = self._events.pop(env_id, None)
        if event is not None:
            event.set()

    async def notify(self, env_id: str) -> None:
        """Call after the transaction that made work available has committed."""
        self.notify_nowait(env_id)

    def notify_nowait(self, env_id: str) -> None:
        """``notify`` from synchronous code: what other servers need is sent in
        the background."""
        self.wake_local(env_id)

    def notify_later(self, env_id: str, delay: float) -> None:
        """Notify after ``delay`` seconds (a retry whose backoff ends then)."""
        loop = asyncio.get_running_loop()
        task_set = self._timers

        def fire() -> None:
            task = loop.create_task(self.notify(env_id))
            task_set.add(task)
            task.add_done_callback(task_set.discard)

        loop.call_later(max(0.0, delay), fire)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass
