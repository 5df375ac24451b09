"""How the client sends a :class:`~triggerfish.sdk._calls.Call`: HTTP, or the client socket."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from triggerfish import _otel
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
    import httpx

    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout) or call.method == "GET":
        return ServerUnreachable(api_url, exc)
    return ConnectionLost(f"{call.method} {call.path}", api_url, exc)


class _Transport:
    """Sends calls with one shared sync and one shared async HTTP connection pool,
    and triggers over the client socket when there is one (``sdk/_socket.py``)."""

    #: paths whose full URL is kept (a trigger's path repeats; a run's does not)
    URL_CACHE_SIZE = 256

    def __init__(
        self, api_url: str, secret_key: str, timeout: float, socket: bool, env: str | None = None
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._key = secret_key
        #: the body of the last answer, as the server sent it (the CLI's ``--json``)
        self.last_json: Any = None
        self._headers = {"Authorization": f"Bearer {secret_key}"}
        # the environment asked for (``env=``): the server refuses a key of another one
        asked = {ENVIRONMENT_HEADER: env} if env is not None else {}
        self._headers.update(asked)
        self._timeout = timeout
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._urls: dict[str, httpx.URL] = {}
        self._sync_socket = SyncSocket(api_url, secret_key, timeout, asked) if socket else None
        self._async_socket = AsyncSocket(api_url, secret_key, timeout, asked) if socket else None

    def _url(self, client: httpx.Client | httpx.AsyncClient, path: str) -> httpx.URL:
        # httpx parses a relative URL and merges it with the base URL on every
        # request (about a fifth of a trigger's client CPU); an absolute URL
        # object passes through as it is
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= self.URL_CACHE_SIZE:
                self._urls.clear()
            url = self._urls[path] = client.build_request("GET", path).url
        return url

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

    def _send(self, call: Call[T]) -> T:
        if call.over_socket is not None and self._sync_socket is not None:
            answer = self._sync_socket.call(*call.over_socket)
            if answer is not NOT_SENT:
                self.last_json = answer
                return call.parse(answer)
        import httpx  # after the first call, a look-up in sys.modules

        if self._sync is None:
            self._sync = httpx.Client(
                base_url=self.api_url, headers=self._headers, timeout=self._timeout
            )
        try:
            response = self._sync.request(
                call.method,
                self._url(self._sync, call.path),
                json=call.json,
                headers=call.headers,
                params=call.params or None,  # an empty mapping still costs a URL rebuild
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc, call, self.api_url) from exc
        _raise_for(response, self.api_url, self._key)
        self.last_json = response.json()
        return call.parse(self.last_json)

    async def _send_async(self, call: Call[T]) -> T:
        if call.over_socket is not None and self._async_socket is not None:
            answer = await self._async_socket.call(*call.over_socket)
            if answer is not NOT_SENT:
                self.last_json = answer
                return call.parse(answer)
        import httpx

        if self._async is None:
            self._async = httpx.AsyncClient(
                base_url=self.api_url, headers=self._headers, timeout=self._timeout
            )
        try:
            response = await self._async.request(
                call.method,
                self._url(self._async, call.path),
                json=call.json,
                headers=call.headers,
                params=call.params or None,
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc, call, self.api_url) from exc
        _raise_for(response, self.api_url, self._key)
        self.last_json = response.json()
        return call.parse(self.last_json)

    def _sync_client(self) -> httpx.Client:
        if self._sync is None:
            import httpx

            self._sync = httpx.Client(
                base_url=self.api_url, headers=self._headers, timeout=self._timeout
            )
        return self._sync

    def _async_client(self) -> httpx.AsyncClient:
        if self._async is None:
            import httpx

            self._async = httpx.AsyncClient(
                base_url=self.api_url, headers=self._headers, timeout=self._timeout
            )
        return self._async

    def subscribe(self, sub: Subscription[T]) -> Iterator[T]:
        from triggerfish.sdk import _sse

        for event in _sse.read(self._sync_client(), sub.path, sub.params):
            item = sub.parse(event.event, event.data)
            if item is not None:
                yield item

    async def subscribe_async(self, sub: Subscription[T]) -> AsyncIterator[T]:
        from triggerfish.sdk import _sse

        async for event in _sse.read_async(self._async_client(), sub.path, sub.params):
            item = sub.parse(event.event, event.data)
            if item is not None:
                yield item

    def close(self) -> None:
        if self._sync_socket is not None:
            self._sync_socket.close()
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        if self._async_socket is not None:
            await self._async_socket.close()
        if self._async is not None:
            await self._async.aclose()
            self._async = None


_TRIGGER_ATTRS = {"messaging.system": "triggerfish", "messaging.operation.type": "send"}


def _with_context(call: Call[T], traceparent: str | None) -> Call[T]:
    """``call`` carrying the caller's trace context: a header over HTTP, a field of
    the frame over the client socket."""
    if traceparent is None:
        return call
    socket = call.over_socket
    if socket is not None:
        socket = (socket[0], {**socket[1], "traceparent": traceparent})
    return dataclasses.replace(call, headers={"traceparent": traceparent}, over_socket=socket)
