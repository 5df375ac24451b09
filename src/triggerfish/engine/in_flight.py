"""One look-up per key at a time, shared by every caller that asks meanwhile."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class InFlight(Generic[K, V]):
    """Callers asking for a key whose look-up is under way await that one instead
    of starting their own: a thousand requests arriving together with the same
    cache miss (an API key, a run's final state) cost one query, not a thousand
    pooled connections. Nothing is kept once the look-up ends (callers cache)."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, look_up: Callable[[], Awaitable[V]]) -> V:
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(look_up())
            self._running[key] = running
            running.add_done_callback(functools.partial(self._ended, key))
        # shielded: a caller that leaves (its client hung up) does not cancel the others'
        return await asyncio.shield(running)

    def _ended(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # read, so a look-up whose callers all left logs nothing
