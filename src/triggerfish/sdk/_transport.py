"""How the client sends a :class:`~triggerfish.sdk._calls.Call`: HTTP, or the client socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, TypeVar

from triggerfish.errors import ApiError
from triggerfish.sdk._calls import Call, Subscription
from triggerfish.sdk._socket import NOT_SENT, AsyncSocket, SyncSocket

if TYPE_CHECKING:
    # imported on first use: task processes that never call the API stay small
    import httpx

T = TypeVar("T")


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        message = response.json().get("error") or response.text
    except ValueError:
        message = response.text or response.reason_phrase
    raise ApiError(response.status_code, message, response.text)


class _Transport:
    """Sends calls with one shared sync and one shared async HTTP connection pool,
    and triggers over the client socket when there is one (``sdk/_socket.py``)."""

    #: paths whose full URL is kept (a trigger's path repeats; a run's does not)
    URL_CACHE_SIZE = 256

    def __init__(self, api_url: str, secret_key: str, timeout: float, socket: bool) -> None:
        self.api_url = api_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {secret_key}"}
        self._timeout = timeout
        self._sync: httpx.Client | None = None
        self._async: httpx.AsyncClient | None = None
        self._urls: dict[str, httpx.URL] = {}
        self._sync_socket = SyncSocket(api_url, secret_key, timeout) if socket else None
        self._async_socket = AsyncSocket(api_url, secret_key, timeout) if socket else None

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
        if call.over_socket is not None and self._sync_socket is not None:
            answer = self._sync_socket.call(*call.over_socket)
            if answer is not NOT_SENT:
                return call.parse(answer)
        if self._sync is None:
            import httpx

            self._sync = httpx.Client(
                base_url=self.api_url, headers=self._headers, timeout=self._timeout
            )
        response = self._sync.request(
            call.method,
            self._url(self._sync, call.path),
            json=call.json,
            params=call.params or None,  # an empty mapping still costs a URL rebuild
        )
        _raise_for(response)
        return call.parse(response.json())

    async def send_async(self, call: Call[T]) -> T:
        if call.over_socket is not None and self._async_socket is not None:
            answer = await self._async_socket.call(*call.over_socket)
            if answer is not NOT_SENT:
                return call.parse(answer)
        if self._async is None:
            import httpx

            self._async = httpx.AsyncClient(
                base_url=self.api_url, headers=self._headers, timeout=self._timeout
            )
        response = await self._async.request(
            call.method,
            self._url(self._async, call.path),
            json=call.json,
            params=call.params or None,
        )
        _raise_for(response)
        return call.parse(response.json())

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
