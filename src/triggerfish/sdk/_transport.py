"""How the client sends a :class:`~triggerfish.sdk._calls.Call`: HTTP, or the client socket."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from triggerfish import _otel
from triggerfish._ids import new_id
from triggerfish._servers import CONNECT_TIMEOUT, HUNG_AFTER, Servers
from triggerfish.errors import (
    ENVIRONMENT_HEADER,
    ApiError,
    ConnectionLost,
    KeyRejected,
    ServerUnreachable,
)
from triggerfish.sdk._calls import Call, Subscription
from triggerfish.sdk._socket import NOT_SENT, AsyncSocket, SyncSocket

if TYPE_CHECKING:
    # imported on first use: task processes that never call the API stay small
    import httpx

T = TypeVar("T")


def _raise_for(response: httpx.Response, api_url: str, key: str) -> None:
    if response.is_success:
        return
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text or response.reason_phrase
    if response.status_code == 401:
        raise KeyRejected(api_url, key, message)
    raise ApiError(response.status_code, message, response.text)


def _transport_error(exc: Exception, call: Call[Any], api_url: str) -> Exception:
    """The typed error for an HTTP failure below the answer (``httpx.TransportError``).

    Nothing reached the server when the connection could not be made, so that
    is :class:`ServerUnreachable`; a connection lost after sending is
    :class:`ConnectionLost` unless the call only reads.
    """
    if _not_sent(exc) or call.method == "GET":
        return ServerUnreachable(api_url, exc)
    return ConnectionLost(f"{call.method} {call.path}", api_url, exc)


def _not_sent(exc: Exception) -> bool:
    import httpx

    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def _may_retry(exc: Exception, call: Call[Any]) -> bool:
    """Whether ``call``, failed below the answer with ``exc``, may be sent again to
    another server: nothing was sent, or sending it twice changes nothing (a
    read, or a trigger the server recognises by its request key)."""
    return _not_sent(exc) or _resendable(call)


def _resendable(call: Call[Any]) -> bool:
    """Whether sending ``call`` twice changes nothing more than sending it once."""
    return call.method in _REPEATABLE or call.deduplicated


#: methods whose second sending changes nothing more than the first did
_REPEATABLE = frozenset({"GET", "HEAD", "PUT", "DELETE"})
#: WIRE.md §2: one value per logical call, the same on each of its retries
REQUEST_KEY_HEADER = "x-trigger-request-idempotency-key"


class _Transport:
    """Sends calls with one shared sync and one shared async HTTP connection pool,
    and triggers over the client socket when there is one (``sdk/_socket.py``).

    ``api_url`` may list several servers, comma-separated (``_servers.py``): a
    call the current server fails is sent to the next one, with the same
    request key (``x-trigger-request-idempotency-key``) on every try.
    """

    #: paths whose full URL is kept (a trigger's path repeats; a run's does not)
    URL_CACHE_SIZE = 256

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        timeout: float,
        socket: bool,
        connect_timeout: float | None = None,
        env: str | None = None,
    ) -> None:
        self.servers = Servers.parse(api_url)
        self.api_url = ",".join(self.servers.urls)
        self._key = secret_key
        #: the body of the last answer, as the server sent it (the CLI's ``--json``)
        self.last_json: Any = None
        self._headers = {"Authorization": f"Bearer {secret_key}"}
        # the environment asked for (``env=``): the server refuses a key of another one
        self._asked = {ENVIRONMENT_HEADER: env} if env is not None else {}
        self._headers.update(self._asked)
        if connect_timeout is None:
            # one server: as it always was; several: do not wait long on one gone
            connect_timeout = min(timeout, CONNECT_TIMEOUT) if self.servers.several else timeout
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        n = len(self.servers.urls)
        self._sync: list[httpx.Client | None] = [None] * n
        self._async: list[httpx.AsyncClient | None] = [None] * n
        self._urls: dict[tuple[int, str], httpx.URL] = {}
        self._socket = socket
        # the client socket goes to the current server: made again after a move
        self._socket_at = -1
        self._sync_socket: SyncSocket | None = None
        self._async_socket: AsyncSocket | None = None
        self._old_async_sockets: list[AsyncSocket] = []

    def _timeouts(self) -> httpx.Timeout:
        import httpx

        return httpx.Timeout(self._timeout, connect=self._connect_timeout)

    def _url(self, client: httpx.Client | httpx.AsyncClient, index: int, path: str) -> httpx.URL:
        # httpx parses a relative URL and merges it with the base URL on every
        # request (about a fifth of a trigger's client CPU); an absolute URL
        # object passes through as it is
        url = self._urls.get((index, path))
        if url is None:
            if len(self._urls) >= self.URL_CACHE_SIZE:
                self._urls.clear()
            url = self._urls[(index, path)] = client.build_request("GET", path).url
        return url

    def _sockets_here(self) -> None:
        """Point the client socket at the current server (after a move)."""
        if not self._socket or self._socket_at == self.servers.index:
            return
        if self._sync_socket is not None:
            self._sync_socket.close()
        if self._async_socket is not None:
            self._old_async_sockets.append(self._async_socket)  # closed by aclose()
        url = self.servers.current
        # only triggers (request-keyed) go over the socket: with several servers
        # one that has not answered within HUNG_AFTER is left for the next
        answer = min(self._timeout, HUNG_AFTER) if self.servers.several else self._timeout
        self._sync_socket = SyncSocket(
            url, self._key, answer, self._asked, open_timeout=self._connect_timeout
        )
        self._async_socket = AsyncSocket(
            url, self._key, answer, self._asked, open_timeout=self._connect_timeout
        )
        self._socket_at = self.servers.index

    def send(self, call: Call[T]) -> T:
        if call.traced is not None and _otel.active():
            with _otel.producer_span(call.traced, _TRIGGER_ATTRS) as traceparent:
                return self._send(_with_context(call, traceparent))
        return self._send(call)

    async def send_async(self, call: Call[T]) -> T:
        if call.traced is not None and _otel.active():
            with _otel.producer_span(call.traced, _TRIGGER_ATTRS) as traceparent:
                return await self._send_async(_with_context(call, traceparent))
        return await self._send_async(call)

    def _try_timeout(self, call: Call[Any], deadline: float, last: bool) -> Any:
        """The timeout of one try of ``call``: with several servers and a call
        that may be sent again, ``HUNG_AFTER`` on each server but the last of the
        tries, which has what is left of the client's ``timeout``; otherwise the
        client's own."""
        import httpx

        if not self.servers.several or not _resendable(call):
            return httpx.USE_CLIENT_DEFAULT
        left = max(deadline - time.monotonic(), 0.1)
        wait = left if last else min(left, HUNG_AFTER)
        return httpx.Timeout(wait, connect=min(self._connect_timeout, wait))

    def _send(self, call: Call[T]) -> T:
        call = _keyed(call)
        deadline = time.monotonic() + self._timeout
        if call.over_socket is not None and self._socket:
            self._sockets_here()
            assert self._sync_socket is not None
            at = self.servers.index
            try:
                answer = self._sync_socket.call(*call.over_socket)
            except ConnectionLost:
                if not self.servers.several:
                    raise
                self.servers.failed(at)  # the same call, request key and all, goes on
            else:
                if answer is not NOT_SENT:
                    self.last_json = answer
                    return call.parse(answer)
        import httpx  # after the first call, a look-up in sys.modules

        tried: list[tuple[str, Exception]] = []
        order = self.servers.order()
        for n, index in enumerate(order):
            url = self.servers.urls[index]
            client = self._sync_client(index)
            try:
                response = client.request(
                    call.method,
                    self._url(client, index, call.path),
                    json=call.json,
                    headers=call.headers,
                    params=call.params or None,  # an empty mapping still costs a URL rebuild
                    timeout=self._try_timeout(call, deadline, last=n == len(order) - 1),
                )
            except httpx.TransportError as exc:
                self._failed_at(index, exc, call, tried)
                continue
            self.servers.answered(index)
            _raise_for(response, url, self._key)
            self.last_json = response.json()
            return call.parse(self.last_json)
        raise ServerUnreachable.of_all(tried)

    async def _send_async(self, call: Call[T]) -> T:
        call = _keyed(call)
        deadline = time.monotonic() + self._timeout
        if call.over_socket is not None and self._socket:
            self._sockets_here()
            assert self._async_socket is not None
            at = self.servers.index
            try:
                answer = await self._async_socket.call(*call.over_socket)
            except ConnectionLost:
                if not self.servers.several:
                    raise
                self.servers.failed(at)
            else:
                if answer is not NOT_SENT:
                    self.last_json = answer
                    return call.parse(answer)
        import httpx

        tried: list[tuple[str, Exception]] = []
        order = self.servers.order()
        for n, index in enumerate(order):
            url = self.servers.urls[index]
            client = self._async_client(index)
            try:
                response = await client.request(
                    call.method,
                    self._url(client, index, call.path),
                    json=call.json,
                    headers=call.headers,
                    params=call.params or None,
                    timeout=self._try_timeout(call, deadline, last=n == len(order) - 1),
                )
            except httpx.TransportError as exc:
                self._failed_at(index, exc, call, tried)
                continue
            self.servers.answered(index)
            _raise_for(response, url, self._key)
            self.last_json = response.json()
            return call.parse(self.last_json)
        raise ServerUnreachable.of_all(tried)

    def _failed_at(
        self, index: int, exc: Exception, call: Call[Any], tried: list[tuple[str, Exception]]
    ) -> None:
        """Server ``index`` failed ``call`` with ``exc``: raise, or note it and go on."""
        url = self.servers.urls[index]
        if not self.servers.several:
            raise _transport_error(exc, call, url) from exc
        if not _may_retry(exc, call):
            # sent, maybe acted on, and not safe to send again: the caller decides
            raise ConnectionLost(f"{call.method} {call.path}", url, exc) from exc
        self.servers.failed(index)
        tried.append((url, exc))

    def _sync_client(self, index: int | None = None) -> httpx.Client:
        index = self.servers.index if index is None else index
        client = self._sync[index]
        if client is None:
            import httpx

            client = self._sync[index] = httpx.Client(
                base_url=self.servers.urls[index], headers=self._headers, timeout=self._timeouts()
            )
        return client

    def _async_client(self, index: int | None = None) -> httpx.AsyncClient:
        index = self.servers.index if index is None else index
        client = self._async[index]
        if client is None:
            import httpx

            client = self._async[index] = httpx.AsyncClient(
                base_url=self.servers.urls[index], headers=self._headers, timeout=self._timeouts()
            )
        return client

    def subscribe(self, sub: Subscription[T]) -> Iterator[T]:
        from triggerfish.sdk import _sse

        timeout = _sse.stream_timeout(self._connect_timeout)
        events = _sse.read(self._sync_client, self.servers, sub.path, sub.params, timeout)
        for event in events:
            item = sub.parse(event.event, event.data)
            if item is not None:
                yield item

    async def subscribe_async(self, sub: Subscription[T]) -> AsyncIterator[T]:
        from triggerfish.sdk import _sse

        timeout = _sse.stream_timeout(self._connect_timeout)
        events = _sse.read_async(self._async_client, self.servers, sub.path, sub.params, timeout)
        async for event in events:
            item = sub.parse(event.event, event.data)
            if item is not None:
                yield item

    def close(self) -> None:
        if self._sync_socket is not None:
            self._sync_socket.close()
        for i, client in enumerate(self._sync):
            if client is not None:
                client.close()
                self._sync[i] = None

    async def aclose(self) -> None:
        for socket in [*self._old_async_sockets, self._async_socket]:
            if socket is not None:
                await socket.close()
        self._old_async_sockets.clear()
        for i, client in enumerate(self._async):
            if client is not None:
                await client.aclose()
                self._async[i] = None


def _keyed(call: Call[T]) -> Call[T]:
    """``call`` with its request key, made once for the call and sent with every
    try of it: a header over HTTP, ``requestKey`` in the frame over the socket."""
    if call.method == "GET":
        return call
    # time-ordered: the server keeps it in a unique index, where random keys
    # would land on a random page each (a page write per trigger after a checkpoint)
    key = new_id("req")
    socket = call.over_socket
    if socket is not None:
        socket = (socket[0], {**socket[1], "requestKey": key})
    headers = (
        {**call.headers, REQUEST_KEY_HEADER: key} if call.headers else {REQUEST_KEY_HEADER: key}
    )
    return dataclasses.replace(call, headers=headers, over_socket=socket)


_TRIGGER_ATTRS = {"messaging.system": "triggerfish", "messaging.operation.type": "send"}


def _with_context(call: Call[T], traceparent: str | None) -> Call[T]:
    """``call`` carrying the caller's trace context: a header over HTTP, a field of
    the frame over the client socket."""
    if traceparent is None:
        return call
    socket = call.over_socket
    if socket is not None:
        socket = (socket[0], {**socket[1], "traceparent": traceparent})
    headers = {**(call.headers or {}), "traceparent": traceparent}
    return dataclasses.replace(call, headers=headers, over_socket=socket)
