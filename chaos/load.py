"""The mixed load: runs of the chaos tasks, each with its own idempotency key.

Shapes (``project/tasks/chaos_tasks.py``): durable steps only, a step / wait /
step (waits above the workers' suspend threshold suspend the run), a parent
that waits on a child run, and a run that waits on a waitpoint token the load
created and completes a moment later. Triggers alternate between the two
servers; a trigger that fails (server killed, database down) is sent again
with the same key, to the other server, until it is answered; one in ten is
sent twice on purpose. The number of unfinished runs is bounded, so a fault
hits a steady state rather than a growing queue.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from chaos.check import Triggered
from chaos.effects import EffectsReader
from triggerfish import Triggerfish

#: shape -> weight
MIX = {"chaos-steps": 4, "chaos-wait": 3, "chaos-parent": 2, "chaos-token": 2}
#: how long one trigger (or token call) keeps being retried before the suite gives up on it
CALL_PATIENCE = 180.0
#: a call with no answer after this long is abandoned and sent again (same key)
CALL_TIMEOUT = 30.0


@dataclass
class LoadStats:
    triggered: int = 0
    trigger_errors: int = 0
    #: calls that got no answer at all within CALL_TIMEOUT (sent again)
    hung_calls: int = 0
    resent: int = 0
    tokens_completed: int = 0
    ended: int = 0
    #: (when, runs finished so far): the progress curve
    progress: list[tuple[float, int]] = field(default_factory=list)


class Load:
    """Triggers runs on ``clients`` (one per server) while :meth:`run` runs."""

    def __init__(
        self,
        clients: list[Triggerfish],
        reader: EffectsReader,
        *,
        max_in_flight: int,
        prefix: str = "k",
        seed: int = 17,
    ) -> None:
        self.clients = clients
        self.reader = reader
        self.max_in_flight = max_in_flight
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.triggered: dict[str, Triggered] = {}
        self.ended: set[str] = set()
        self.stats = LoadStats()
        self._tokens: list[tuple[float, str]] = []
        self._seen_until = 0.0
        self._calls: set[asyncio.Task[None]] = set()
        self._n = 0
        self._closed = False

    @property
    def unfinished(self) -> int:
        return len(self.triggered) - len(self.ended & self.triggered.keys())

    async def run(self, stop: asyncio.Event, limit: int | None = None) -> None:
        """Trigger runs until ``stop`` is set or ``limit`` runs were triggered; tokens
        are completed until :meth:`drain` ends."""
        self._spawn(self._token_loop())
        while not stop.is_set() and (limit is None or self._n < limit):
            await self.refresh()
            room = self.max_in_flight - self.unfinished
            for _ in range(max(0, min(room, 8))):
                if limit is not None and self._n >= limit:
                    break
                self._spawn(self._trigger_one(self._n))
                self._n += 1
            await asyncio.sleep(0.2)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def refresh(self, everything: bool = False) -> None:
        """Note the keys whose body finished since the last look (a row commits a
        moment after its time is taken: look a while back), or ``everything``."""
        since = 0.0 if everything else self._seen_until - 30
        for key, at in await self.reader.ended_keys(since):
            self._seen_until = max(self._seen_until, at)
            if key in self.triggered and key not in self.ended:
                self.ended.add(key)
        self.stats.ended = len(self.ended)
        self.stats.progress.append((time.time(), len(self.ended)))

    def _payload(self, task: str, key: str) -> dict[str, Any]:
        payload: dict[str, Any] = {"key": key, "hold": round(self.rng.uniform(0.05, 0.4), 3)}
        if task == "chaos-steps":
            payload["steps"] = self.rng.randint(2, 5)
        elif task == "chaos-wait":
            # below the suspend threshold: a sleep in place; above: the run suspends
            payload["wait"] = self.rng.choice([0.5, 1.0, 3.0, 4.0])
        return payload

    async def _trigger_one(self, n: int) -> None:
        task = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        key = f"{self.prefix}{n:05d}"
        payload = self._payload(task, key)
        record = Triggered(key, task, time.time())
        self.triggered[key] = record
        first = n % len(self.clients)
        if task == "chaos-token":
            token = await self._call(
                first,
                lambda c: c.waitpoints.create_token_async(
                    idempotency_key=key + "/token", timeout="1h"
                ),
            )
            payload["token"] = token.id
            self._tokens.append((time.time() + self.rng.uniform(0.5, 4.0), token.id))
        handle = await self._call(
            first, lambda c: c.tasks.trigger_async(task, payload, idempotency_key=key)
        )
        record.run_ids.add(handle.id)
        self.stats.triggered += 1
        if self.rng.random() < 0.1:  # the same trigger again, on the other server
            again = await self._call(
                first + 1, lambda c: c.tasks.trigger_async(task, payload, idempotency_key=key)
            )
            record.run_ids.add(again.id)
            self.stats.resent += 1

    async def _call(self, first: int, call: Any) -> Any:
        """``call(client)`` on the clients in turn from ``first`` until one answers."""
        deadline = time.monotonic() + CALL_PATIENCE
        i = first
        while True:
            client = self.clients[i % len(self.clients)]
            try:
                return await asyncio.wait_for(call(client), CALL_TIMEOUT)
            except TimeoutError:
                self.stats.hung_calls += 1
                if time.monotonic() > deadline:
                    raise
                i += 1
            except Exception:
                self.stats.trigger_errors += 1
                if time.monotonic() > deadline:
                    raise
                i += 1
                await asyncio.sleep(0.25)

    async def _token_loop(self) -> None:
        """Complete each token once its moment comes, until :meth:`drain` is over."""
        while not self._closed:
            now = time.time()
            for item in [t for t in self._tokens if t[0] <= now]:
                self._tokens.remove(item)
                self._spawn(self._complete(item[1]))
            await asyncio.sleep(0.1)

    async def _complete(self, token_id: str) -> None:
        await self._call(
            self.stats.tokens_completed,
            lambda c: c.waitpoints.complete_token_async(token_id, {"approved": True}),
        )
        self.stats.tokens_completed += 1

    async def drain(self, timeout: float) -> bool:
        """Wait until every pending call is done and every triggered run's body finished."""
        deadline = time.monotonic() + timeout
        try:
            # the token loop is one of the calls
            while len(self._calls) > 1 or self._tokens:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.2)
            while time.monotonic() < deadline:
                await self.refresh(everything=True)
                if not self.unfinished:
                    return True
                await asyncio.sleep(0.5)
            return False
        finally:
            self._closed = True

    async def cancel(self) -> None:
        self._closed = True
        for task in list(self._calls):
            task.cancel()
        await asyncio.gather(*self._calls, return_exceptions=True)
