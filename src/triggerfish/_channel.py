"""A socket to the server: calls as frames on one connection (asyncio).

The worker sends its hot calls here (``api/worker_socket.py``), and the SDK's
async client its triggers (``api/client_socket.py``); the frame format is in
``api/_sockets.py``. Calls are answered in any order; each waits on its own
future, found by the call's id when the answer arrives. The connection opens
on first use and again after it drops; the calls in flight when it drops fail
with :class:`ChannelClosed`, a transport error the caller retries as it would
a failed HTTP request. :class:`CallNotSent`, a kind of it, says the call
never left: the connection was found closed or could not be opened
(:class:`ChannelNotOpened`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from triggerfish.errors import ApiError

log = logging.getLogger(__name__)

#: the header of the handshake's answer naming the largest frame the server takes
MAX_FRAME_HEADER = "x-triggerfish-max-frame"


class ChannelClosed(Exception):
    """The connection could not be opened or dropped before the call was answered."""


class CallNotSent(ChannelClosed):
    """The connection was found closed: the call was not sent."""


class ChannelNotOpened(CallNotSent):
    """The connection could not be opened: the call was not sent."""


class ChannelUnavailable(Exception):
    """The server refused the socket (an older server, or a proxy without WebSockets)."""


class FrameTooLarge(Exception):
    """The call is larger than the server takes as one frame: send it as a request."""


class StaleReport(ApiError):
    """The server refused a report because the attempt is no longer current (409)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)


class Channel:
    """Example: ``await Channel(url, key).call("heartbeat", {...})``."""

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        path: str = "/worker/v1/socket",
        headers: dict[str, str] | None = None,
        *,
        open_timeout: float = 10.0,
    ) -> None:
        base = api_url.rstrip("/")
        self._open_timeout = open_timeout
        self.url = "ws" + base.removeprefix("http") + path
        self._headers = {"Authorization": f"Bearer {secret_key}", **(headers or {})}
        #: the largest frame the server takes (it closes the connection on a larger
        #: one): the server names it when it accepts the connection
        self.max_frame = 1024 * 1024
        self._conn: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._cancels: set[asyncio.Task[None]] = set()

    async def call(
        self, op: str, body: dict[str, Any], *, attempt_id: str = "", timeout: float = 60.0
    ) -> Any:
        """Send one call and wait for its answer body.

        Raises :class:`StaleReport` on 409, ``ApiError`` on any other refusal,
        :class:`ChannelClosed` when no answer can come (:class:`CallNotSent` if
        the call never left), :class:`ChannelUnavailable` when the server offers
        no socket, and :class:`FrameTooLarge` (before sending) when the call
        exceeds ``max_frame``.
        """
        call_id = next(self._ids)
        frame: dict[str, Any] = {"id": call_id, "op": op, "body": body}
        if attempt_id:
            frame["attempt_id"] = attempt_id
        data = json.dumps(frame, separators=(",", ":")).encode()
        if len(data) > self.max_frame:
            raise FrameTooLarge(f"{op} is {len(data)} bytes; frames stop at {self.max_frame}")
        conn = await self._connected()
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = answer
        # the answer's own deadline, not asyncio.wait_for: that wraps the future and
        # takes two more turns of the event loop to hand the answer over
        deadline = asyncio.get_running_loop().call_later(timeout, _expire, answer)
        try:
            try:
                await conn.send(data, text=True)
            except ConnectionClosed as exc:
                if self._conn is conn:
                    self._conn = None  # the next call opens a new connection
                raise CallNotSent(f"the socket was closed: {exc}") from exc
            reply = await answer
        except asyncio.CancelledError:
            self._cancel_on_server(conn, call_id)
            raise
        except ConnectionClosed as exc:
            raise ChannelClosed(f"the socket closed: {exc}") from exc
        except TimeoutError as exc:
            self._cancel_on_server(conn, call_id)  # no one waits for its answer any more
            raise ChannelClosed(f"no answer to {op} within {timeout:g}s") from exc
        finally:
            deadline.cancel()
            self._pending.pop(call_id, None)
        status = reply.get("status")
        if status == 200:
            return reply.get("body")
        message = str(reply.get("error") or "error")
        if status == 409:
            raise StaleReport(message)
        raise ApiError(int(status or 500), message)

    def _cancel_on_server(self, conn: ClientConnection, call_id: int) -> None:
        """Tell the server to drop a call this side gave up on (best effort)."""

        async def send() -> None:
            with contextlib.suppress(ConnectionClosed):
                await conn.send(json.dumps({"id": call_id, "op": "cancel"}))

        task = asyncio.create_task(send())
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _connected(self) -> ClientConnection:
        async with self._opening:
            if self._conn is not None:
                return self._conn
            try:
                conn = await connect(
                    self.url,
                    additional_headers=self._headers,
                    compression=None,  # small frames: compressing costs more than it saves
                    max_size=None,  # answers (claimed runs with their payloads) are not capped
                    open_timeout=self._open_timeout,
                )
            except InvalidStatus as exc:
                raise ChannelUnavailable(
                    f"{self.url} answered HTTP {exc.response.status_code}"
                ) from exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                raise ChannelNotOpened(f"cannot open {self.url}: {exc}") from exc
            self.max_frame = max_frame_of(conn.response, self.max_frame)
            self._conn = conn
            self._reader = asyncio.create_task(self._read(conn))
            return conn

    async def _read(self, conn: ClientConnection) -> None:
        try:
            async for message in conn:
                reply = json.loads(message)
                waiting = self._pending.get(reply.get("id"))
                if waiting is not None and not waiting.done():
                    waiting.set_result(reply)
        except ConnectionClosed:
            pass
        finally:
            if self._conn is conn:
                self._conn = None
            gone = ChannelClosed("the socket closed with the call in flight")
            for waiting in list(self._pending.values()):
                if not waiting.done():
                    waiting.set_exception(gone)


def _expire(answer: asyncio.Future[dict[str, Any]]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())


def max_frame_of(response: Any, default: int) -> int:
    """The largest frame the server said it takes in the handshake's ``response``."""
    named = response.headers.get(MAX_FRAME_HEADER, "") if response is not None else ""
    return int(named) if named.isdigit() else default
