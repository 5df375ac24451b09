"""Signed HTTP from tasks back into the app: an httpx client that signs and retries."""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import httpx

from triggerfish._domain.retry import RetryPolicy
from triggerfish.callbacks._sign import (
    DEFAULT_HEADER,
    Scheme,
    check_scheme,
    secret_from_environment,
    signed_headers,
)
from triggerfish.sdk._durable import _current
from triggerfish.sdk._step import step

#: methods safe to send again: retried on a lost connection or a 5xx/429
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class CallbackError(Exception):
    """The app answered a callback with an error status (``status``, ``body``)."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.status, self.body = status, body
        super().__init__(f"{method} {url} answered {status}: {body[:300]}")


class CallbackAuth(httpx.Auth):
    """An ``httpx.Auth`` that signs each request with the callback secret."""

    requires_request_body = True

    def __init__(self, secret: str, scheme: Scheme = "bearer", header: str = DEFAULT_HEADER):
        self._secret, self._scheme, self._header = secret, check_scheme(scheme), header

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        target = request.url.raw_path.decode()
        headers = signed_headers(
            self._scheme, self._secret, request.method, target, request.content, header=self._header
        )
        request.headers.update(headers)
        yield request


class CallbackClient:
    """Calls into the app that started the task, signed with the callback secret.

    ``secret`` defaults to ``TRIGGERFISH_CALLBACK_SECRET`` (or
    ``TRIGGER_CALLBACK_SECRET``) from the worker's environment. Idempotent
    methods (and any call given an ``idempotency_key``) are retried with
    backoff on a lost connection or a 408/425/429/5xx answer; ``http`` is the
    signed ``httpx.Client`` itself for anything else.

    Example (CodeCourier's callback)::

        app = callbacks.client("https://app.example.com", scheme="bearer")

        @task(id="orchestrator")
        def orchestrator(payload: dict) -> dict:
            config = app.callback("load-config", "getConfig", {"runId": payload["runId"]})
            ...
    """

    def __init__(
        self,
        base_url: str,
        secret: str | None = None,
        *,
        scheme: Scheme = "bearer",
        header: str = DEFAULT_HEADER,
        timeout: float = 10.0,
        tries: int = 3,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tries, self.backoff = max(1, tries), backoff
        auth = CallbackAuth(secret_from_environment(secret), scheme, header)
        #: the signed client: every request it sends carries the credential
        self.http = httpx.Client(
            base_url=self.base_url, auth=auth, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> CallbackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """Send one signed request; retry it when that is safe; raise :class:`CallbackError`."""
        method = method.upper()
        extra = dict(headers or {})
        if idempotency_key:
            extra["idempotency-key"] = idempotency_key
        retry = method in IDEMPOTENT or bool(idempotency_key)
        for attempt in range(1, self.tries + 1):
            last = attempt == self.tries or not retry
            try:
                response = self.http.request(method, path, json=json, params=params, headers=extra)
            except httpx.TransportError:
                if last:
                    raise
                time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            if response.status_code in _RETRYABLE_STATUS and not last:
                time.sleep(_retry_after(response, self.backoff * 2 ** (attempt - 1)))
                continue
            if response.is_error:
                raise CallbackError(method, str(response.url), response.status_code, response.text)
            return response
        raise AssertionError("unreachable: the last try returns or raises")

    def call(
        self,
        key: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """The answer's JSON, as a durable step named ``key``.

        Inside a task the call runs once per run (a replay returns the recorded
        answer) and carries ``Idempotency-Key: <run id>:<key>``, so the app can
        recognise a retry of a call whose answer was lost. The step is retried
        per ``retry`` (default: the task's policy). Outside a task it is a plain
        call. In ``async def`` tasks, ``await`` it.
        """
        run = _current.get()
        if run is None:
            return self._json(method, path, json, params, None)
        return step.run(
            key, self._json, method, path, json, params, f"{run.run_id}:{key}", retry=retry
        )

    def callback(
        self,
        key: str,
        operation: str,
        args: Any = None,
        *,
        path: str = "/trigger/callback",
        retry: RetryPolicy | None = None,
    ) -> Any:
        """``POST {path}`` with ``{"operation", "args"}`` as a step: the app's dispatcher."""
        body = {"operation": operation, "args": args if args is not None else {}}
        return self.call(key, "POST", path, json=body, retry=retry)

    def _json(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, Any] | None,
        idempotency_key: str | None,
    ) -> Any:
        response = self.request(
            method, path, json=json, params=params, idempotency_key=idempotency_key
        )
        return response.json() if response.content else None


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), 30.0)
    except ValueError:
        return default


def client(
    base_url: str,
    secret: str | None = None,
    *,
    scheme: Scheme = "bearer",
    header: str = DEFAULT_HEADER,
    timeout: float = 10.0,
    tries: int = 3,
) -> CallbackClient:
    """A :class:`CallbackClient` for ``base_url`` (the httpx client factory)."""
    return CallbackClient(
        base_url, secret, scheme=scheme, header=header, timeout=timeout, tries=tries
    )
