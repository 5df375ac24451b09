"""Server-sent events for subscriptions: the parser, and the reconnecting loops.

A subscription (``_calls.Subscription``) is read as an ``text/event-stream``.
When the connection drops before the server's ``end`` event, or a server
cannot be reached, the client connects again with ``Last-Event-ID`` (the last
``id:`` it saw) and the server goes on from there: the caller's iterator sees
every event once. With several servers (``_servers.py``) it connects to the
next one: change ids are the shared feed's, so any server of the database
resumes the stream. A stream silent for ``STREAM_SILENCE`` seconds (the
server sends a comment every 15 s) counts as dropped: its server hangs. A
stream that names a ``retry:`` wait and ends is a busy server's answer: that
server is tried again no sooner than that.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from triggerfish._servers import Servers

#: seconds between reconnections after a dropped stream, first and longest
RECONNECT_FIRST = 0.1
RECONNECT_MAX = 5.0
#: the longest wait a server's ``retry:`` field is followed for
RETRY_MAX = 60.0
#: seconds a stream may go without a line before its server counts as hung:
#: twice the server's keep-alive interval (``KEEPALIVE`` in ``api/realtime.py``)
STREAM_SILENCE = 30.0


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
        #: seconds the server asked to wait before connecting again (``retry:``)
        self.retry: float | None = None

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
        elif name == "retry" and value.isdigit():
            self.retry = int(value) / 1000
        return None


def _events(lines: Iterable[str], parser: Parser) -> Iterator[Event]:
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


def _busy(response: httpx.Response) -> float | None:
    """The seconds a busy server asked for (``Retry-After`` on a stream that says
    only that, see ``api/realtime.py``); None for a stream that goes on."""
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


def _headers(last_id: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    return headers


def _caller(client: httpx.Client | httpx.AsyncClient) -> tuple[str, str]:
    """The server URL and key a refusal names (``KeyRejected``)."""
    key = client.headers.get("authorization", "").removeprefix("Bearer ")
    return str(client.base_url), key


class Reconnects:
    """Where and when a stream connects again after it dropped or could not be made.

    The server that failed it is left for the next one of the list, at once,
    while some server has not failed since the stream last connected; once all
    have, each try waits (``RECONNECT_FIRST``, doubling up to ``RECONNECT_MAX``).
    With one server every try waits, as a lone server's stream always did.
    """

    def __init__(self, servers: Servers) -> None:
        self._servers = servers
        self._failed = 0  # tries failed since the stream last connected
        self._delay = RECONNECT_FIRST

    @property
    def index(self) -> int:
        """The server to connect to now."""
        return self._servers.index

    def connected(self, index: int) -> None:
        self._servers.answered(index)
        self._failed = 0
        self._delay = RECONNECT_FIRST

    def dropped(self, index: int, asked: float | None = None) -> float:
        """Server ``index`` dropped the stream (or refused it): seconds to wait
        before the next try, which goes to the next server. ``asked`` is the wait
        the stream's ``retry:`` named (a busy server's answer): the next server is
        still tried at once, but the same one no sooner than that."""
        self._servers.failed(index)
        self._failed += 1
        if self._failed < len(self._servers.urls):
            return 0.0
        wait, self._delay = self._delay, min(self._delay * 2, RECONNECT_MAX)
        return wait if asked is None else max(wait, min(asked, RETRY_MAX))


def stream_timeout(connect: float) -> httpx.Timeout:
    """A stream's timeouts: ``connect`` to connect, ``STREAM_SILENCE`` between two lines."""
    import httpx

    return httpx.Timeout(STREAM_SILENCE, connect=connect)


def read(
    clients: Callable[[int], httpx.Client],
    servers: Servers,
    path: str,
    params: dict[str, Any],
    timeout: httpx.Timeout,
) -> Iterator[Event]:
    """Every event of the stream at ``path`` until its ``end``, reconnecting as
    needed, to the next server of ``servers`` (``clients(index)`` reaches one)."""
    from triggerfish.sdk._transport import _raise_for

    last_id: str | None = None
    reconnects = Reconnects(servers)
    while True:
        index = reconnects.index
        client = clients(index)
        parser, asked = Parser(), None
        try:
            with client.stream(
                "GET", path, params=params or None, headers=_headers(last_id), timeout=timeout
            ) as response:
                if not response.is_success:
                    response.read()
                    _raise_for(response, *_caller(client))
                asked = _busy(response)  # if so: the wait below, then the next server
                if asked is None:
                    reconnects.connected(index)
                    for event in _events(response.iter_lines(), parser):
                        if event.event == "end":
                            return
                        if event.id is not None:
                            last_id = event.id
                        yield event
        except Exception as exc:
            if not _retryable(exc):
                raise
        time.sleep(reconnects.dropped(index, asked or parser.retry))


async def read_async(
    clients: Callable[[int], httpx.AsyncClient],
    servers: Servers,
    path: str,
    params: dict[str, Any],
    timeout: httpx.Timeout,
) -> AsyncIterator[Event]:
    """``read`` for async apps."""
    from triggerfish.sdk._transport import _raise_for

    last_id: str | None = None
    reconnects = Reconnects(servers)
    while True:
        index = reconnects.index
        client = clients(index)
        parser, asked = Parser(), None
        try:
            async with client.stream(
                "GET", path, params=params or None, headers=_headers(last_id), timeout=timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    _raise_for(response, *_caller(client))
                asked = _busy(response)  # if so: the wait below, then the next server
                if asked is None:
                    reconnects.connected(index)
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
        await asyncio.sleep(reconnects.dropped(index, asked or parser.retry))
