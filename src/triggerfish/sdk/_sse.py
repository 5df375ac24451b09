"""Server-sent events for subscriptions: the parser, and the reconnecting loops.

A subscription (``_calls.Subscription``) is read as an ``text/event-stream``.
When the connection drops before the server's ``end`` event, the client
connects again with ``Last-Event-ID`` (the last ``id:`` it saw) and the server
goes on from there: the caller's iterator sees every event once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

#: seconds between reconnections after a dropped stream, first and longest
RECONNECT_FIRST = 0.1
RECONNECT_MAX = 5.0


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    id: str | None
    data: Any


class Parser:
    """Feed it lines; it answers complete events."""

    def __init__(self) -> None:
        self._event = "message"
        self._id: str | None = None
        self._data: list[str] = []

    def line(self, line: str) -> Event | None:
        if line == "":
            if not self._data:
                self._event = "message"
                return None
            text = "\n".join(self._data)
            event = Event(self._event, self._id, json.loads(text) if text else None)
            self._event, self._id, self._data = "message", None, []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None


def _events(lines: Iterable[str]) -> Iterator[Event]:
    parser = Parser()
    for line in lines:
        event = parser.line(line)
        if event is not None:
            yield event


def _retryable(exc: BaseException) -> bool:
    import httpx

    from triggerfish.errors import ApiError

    if isinstance(exc, ApiError):
        return exc.status >= 500 or exc.status in (408, 429)
    return isinstance(exc, httpx.TransportError)


def _headers(last_id: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    return headers


def _caller(client: httpx.Client | httpx.AsyncClient) -> tuple[str, str]:
    """The server URL and key a refusal names (``KeyRejected``)."""
    key = client.headers.get("authorization", "").removeprefix("Bearer ")
    return str(client.base_url), key


def read(client: httpx.Client, path: str, params: dict[str, Any]) -> Iterator[Event]:
    """Every event of the stream at ``path`` until its ``end``, reconnecting as needed."""
    from triggerfish.sdk._transport import _raise_for

    last_id: str | None = None
    delay = RECONNECT_FIRST
    while True:
        try:
            with client.stream(
                "GET", path, params=params or None, headers=_headers(last_id), timeout=None
            ) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response, *_caller(client))
                delay = RECONNECT_FIRST
                for event in _events(response.iter_lines()):
                    if event.event == "end":
                        return
                    if event.id is not None:
                        last_id = event.id
                    yield event
        except Exception as exc:
            if not _retryable(exc):
                raise
        time.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX)


async def read_async(
    client: httpx.AsyncClient, path: str, params: dict[str, Any]
) -> AsyncIterator[Event]:
    """``read`` for async apps."""
    from triggerfish.sdk._transport import _raise_for

    last_id: str | None = None
    delay = RECONNECT_FIRST
    while True:
        try:
            async with client.stream(
                "GET", path, params=params or None, headers=_headers(last_id), timeout=None
            ) as response:
                if not response.is_success:
                    await response.aread()
                    _raise_for(response, *_caller(client))
                delay = RECONNECT_FIRST
                parser = Parser()
                async for line in response.aiter_lines():
                    event = parser.line(line)
                    if event is None:
                        continue
                    if event.event == "end":
                        return
                    if event.id is not None:
                        last_id = event.id
                    yield event
        except Exception as exc:
            if not _retryable(exc):
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX)
