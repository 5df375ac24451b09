"""The client's socket to the server: triggers as frames on one open connection.

A trigger over HTTP costs the calling process about three times the CPU of the
same call as a frame (building the request, parsing the answer's headers, the
connection pool's bookkeeping), and the server a pass through its web stack. So
the client sends its triggers over ``/api/v1/socket`` (``api/client_socket.py``)
and everything else over HTTP, and falls back to HTTP for a trigger whenever
the socket cannot carry it without doubt:

- the socket cannot be opened (no server socket behind a proxy, an older
  server, a refused key): HTTP answers instead, and the socket is not tried
  again for :data:`RETRY_AFTER` seconds;
- the call is larger than the server takes as a frame;
- the connection was closed before the call was sent (it is opened again);
- (sync) another thread is using the connection: HTTP serves threads in
  parallel, the socket one call at a time.

A trigger that was sent and then lost its connection before the answer may
have been recorded, exactly as over HTTP when the connection drops after the
request: it raises :class:`~triggerfish.errors.ConnectionLost` and is not
retried here (pass an idempotency key to retry it safely).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from triggerfish.errors import ApiError, ConnectionLost

if TYPE_CHECKING:
    # imported on first use (as websockets is): task processes that never
    # trigger from a client stay small
    from triggerfish._channel import Channel

PATH = "/api/v1/socket"
#: after the socket could not be opened, seconds of HTTP before trying it again
RETRY_AFTER = 30.0
#: the largest frame sent until the server names its own limit
DEFAULT_MAX_FRAME = 1024 * 1024


class _NotSent:
    """The call did not go over the socket: send it over HTTP."""


NOT_SENT = _NotSent()


class SyncSocket:
    """One connection for a sync client; :meth:`call` answers or returns ``NOT_SENT``."""

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        timeout: float,
        headers: dict[str, str] | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = "ws" + api_url.rstrip("/").removeprefix("http") + PATH
        self._secret_key = secret_key
        self._extra_headers = headers or {}
        self._timeout = timeout
        self._open_timeout = min(timeout, open_timeout)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._opened: contextlib.ExitStack | None = None
        # closes the connection of a client dropped without close(): its reading
        # thread would otherwise keep it open for the life of the process
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._owner_pid = 0  # the process that opened the connection
        self._max_frame = DEFAULT_MAX_FRAME
        self._ids = itertools.count(1)
        self._off_until = 0.0

    def call(self, op: str, body: dict[str, Any]) -> Any:
        """The answer's body; raises ``ApiError`` on a refusal, ``ConnectionLost``
        when the call was sent but not answered."""
        if time.monotonic() < self._off_until or not self._lock.acquire(blocking=False):
            return NOT_SENT
        try:
            return self._call(op, body)
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _call(self, op: str, body: dict[str, Any]) -> Any:
        from websockets.exceptions import ConnectionClosed

        call_id = next(self._ids)
        frame = json.dumps({"id": call_id, "op": op, "body": body}, separators=(",", ":"))
        data = frame.encode()
        for _ in range(2):  # a connection found closed is opened once more
            conn = self._connected()
            if conn is None:
                return NOT_SENT
            if len(data) > self._max_frame:
                return NOT_SENT  # HTTP answers it, or refuses it for its size
            try:
                conn.send(data, text=True)
            except ConnectionClosed:
                self._drop()
                continue
            return _body(self._answer(conn, op, call_id))
        return NOT_SENT

    def _answer(self, conn: Any, op: str, call_id: int) -> dict[str, Any]:
        from websockets.exceptions import ConnectionClosed

        try:
            return answer_to(conn, call_id, self._timeout)
        except (ConnectionClosed, TimeoutError) as exc:
            self._drop()  # a late answer must not be read as the next call's
            raise ConnectionLost(op, self.url, exc) from exc

    def _connected(self) -> Any:
        if self._conn is not None and self._owner_pid == os.getpid():
            return self._conn
        self._drop()  # in a forked child, without closing the parent's connection
        from websockets.exceptions import InvalidHandshake

        from triggerfish._channel import max_frame_of

        try:
            opened, self._conn = open_sync_socket(
                self.url,
                self._secret_key,
                open_timeout=self._open_timeout,
                headers=self._extra_headers,
            )
        except (OSError, InvalidHandshake, TimeoutError):
            self._off_until = time.monotonic() + RETRY_AFTER
            return None
        self._opened, self._owner_pid = opened, os.getpid()
        self._finalizer = weakref.finalize(self, _close_in, opened, self._owner_pid)
        self._max_frame = max_frame_of(self._conn.response, DEFAULT_MAX_FRAME)
        return self._conn

    def _drop(self) -> None:
        opened, self._opened, self._conn = self._opened, None, None
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()
        if opened is not None:
            _close_in(opened, self._owner_pid)


class AsyncSocket:
    """The same for an async client: calls multiplexed on one connection per event loop."""

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        timeout: float,
        headers: dict[str, str] | None = None,
        open_timeout: float = 10.0,
    ) -> None:
        self._args = (api_url, secret_key)
        self._extra_headers = headers or {}
        self._timeout = timeout
        self._open_timeout = min(timeout, open_timeout)
        self._channel: Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._off_until = 0.0

    async def call(self, op: str, body: dict[str, Any]) -> Any:
        """As :meth:`SyncSocket.call`."""
        from triggerfish._channel import (
            CallNotSent,
            ChannelClosed,
            ChannelNotOpened,
            ChannelUnavailable,
            FrameTooLarge,
        )

        if time.monotonic() < self._off_until:
            return NOT_SENT
        for _ in range(2):  # a connection found closed is opened once more
            channel = self._for_this_loop()
            try:
                return await channel.call(op, body, timeout=self._timeout)
            except FrameTooLarge:
                return NOT_SENT
            except (ChannelUnavailable, ChannelNotOpened):
                self._off_until = time.monotonic() + RETRY_AFTER
                return NOT_SENT
            except CallNotSent:
                continue
            except ChannelClosed as exc:
                raise ConnectionLost(op, channel.url, exc) from exc
        return NOT_SENT

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and self._loop is asyncio.get_running_loop():
            await channel.close()

    def _for_this_loop(self) -> Channel:
        from triggerfish._channel import Channel

        loop = asyncio.get_running_loop()
        if self._channel is None or self._loop is not loop:
            # a connection belongs to the loop that opened it
            self._channel = Channel(
                *self._args,
                path=PATH,
                headers=self._extra_headers,
                open_timeout=self._open_timeout,
            )
            self._channel.max_frame = DEFAULT_MAX_FRAME
            self._loop = loop
        return self._channel


def open_sync_socket(
    url: str, secret_key: str, *, open_timeout: float, headers: dict[str, str] | None = None
) -> tuple[contextlib.ExitStack, Any]:
    """A blocking connection to a server socket, and what closes it."""
    from websockets.sync.client import connect

    opened = contextlib.ExitStack()
    conn = opened.enter_context(
        connect(
            url,
            additional_headers={"Authorization": f"Bearer {secret_key}", **(headers or {})},
            compression=None,  # small frames: compressing costs more than it saves
            max_size=None,
            open_timeout=open_timeout,
            close_timeout=1,
            # no pings of our own: the server pings, and the reading thread answers
            ping_interval=None,
        )
    )
    return opened, conn


def answer_to(conn: Any, call_id: int, timeout: float) -> dict[str, Any]:
    """The answer to call ``call_id``, read from a blocking connection within ``timeout``
    (``TimeoutError`` past it). An answer to a call given up on earlier may still
    arrive: it is skipped."""
    deadline = time.monotonic() + timeout
    while True:
        reply = json.loads(conn.recv(timeout=max(0.0, deadline - time.monotonic())))
        if isinstance(reply, dict) and reply.get("id") == call_id:
            return reply


def _close_in(opened: contextlib.ExitStack, owner_pid: int) -> None:
    """Close a connection, if this is the process that opened it (a forked child
    shares the socket with its parent and must leave it alone)."""
    if os.getpid() == owner_pid:
        with contextlib.suppress(Exception):  # already broken: nothing to close cleanly
            opened.close()


def _body(reply: dict[str, Any]) -> Any:
    status = reply.get("status")
    if status == 200:
        return reply.get("body")
    raise ApiError(int(status or 500), str(reply.get("error") or "error"))
