"""The worker's side of the worker API: one persistent HTTP/1.1 connection pool."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from triggerfish.errors import ApiError

log = logging.getLogger(__name__)


class StaleReport(Exception):
    """The server refused a report because the attempt is no longer current (409)."""


class WorkerApi:
    def __init__(self, api_url: str, secret_key: str, *, timeout: float = 30.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {secret_key}"},
            timeout=httpx.Timeout(timeout, read=timeout + 30),
            limits=httpx.Limits(max_keepalive_connections=16),
        )

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self._http.post(path, json=body)
        if response.status_code == 409:
            raise StaleReport(response.json().get("error", "stale"))
        if not response.is_success:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ApiError(response.status_code, message)
        return response.json()

    async def post_reliably(self, path: str, body: dict[str, Any], *, give_up_after: float) -> Any:
        """POST, retrying connection failures and 5xx with backoff.

        Results must not be lost to a server restart or a network blip; if the
        server stays away longer than the lease, the run is reclaimed anyway and
        the late report is refused as stale.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + give_up_after
        delay = 0.2
        while True:
            try:
                return await self._post(path, body)
            except (httpx.TransportError, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status < 500:
                    raise
                if loop.time() + delay > deadline:
                    raise
                log.warning("POST %s failed (%s); retrying in %.1fs", path, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.post_reliably(
            "/worker/v1/register", body, give_up_after=30
        )
        return result

    async def dequeue(
        self, worker_id: str, limit: int, wait: float, start: int = 0
    ) -> list[dict[str, Any]]:
        """Claim up to ``limit`` runs; the server starts the first ``start`` of them."""
        body = {"worker_id": worker_id, "max": limit, "wait": wait, "start": start}
        result = await self._post("/worker/v1/dequeue", body)
        return list(result["runs"])

    async def reports(self, body: dict[str, Any], *, give_up_after: float) -> dict[str, Any]:
        """Report started and finished attempts in one request (``starts``,
        ``completions``; one answer per item, in order), claiming runs with ``claim``."""
        result: dict[str, Any] = await self.post_reliably(
            "/worker/v1/reports", body, give_up_after=give_up_after
        )
        return result

    async def durable(
        self, attempt_id: str, op: str, body: dict[str, Any], *, give_up_after: float
    ) -> dict[str, Any]:
        """A task's durable call (``journal``, ``wait``, ``blob``…) for this attempt."""
        result: dict[str, Any] = await self.post_reliably(
            f"/worker/v1/attempts/{attempt_id}/{op}", body, give_up_after=give_up_after
        )
        return result

    async def heartbeat(self, worker_id: str, attempt_ids: list[str]) -> list[str]:
        result = await self._post(
            "/worker/v1/heartbeat", {"worker_id": worker_id, "attempt_ids": attempt_ids}
        )
        return list(result["stop"])

    async def logs(self, attempt_id: str, lines: list[dict[str, Any]]) -> None:
        await self.post_reliably(
            "/worker/v1/logs", {"attempt_id": attempt_id, "lines": lines}, give_up_after=10
        )

    async def metadata(self, attempt_id: str, operations: list[dict[str, Any]]) -> None:
        await self.post_reliably(
            "/worker/v1/metadata",
            {"attempt_id": attempt_id, "operations": operations},
            give_up_after=10,
        )

    async def release(self, worker_id: str, attempt_ids: list[str]) -> None:
        await self.post_reliably(
            "/worker/v1/release",
            {"worker_id": worker_id, "attempt_ids": attempt_ids},
            give_up_after=10,
        )

    async def deregister(self, worker_id: str) -> None:
        await self._post("/worker/v1/deregister", {"worker_id": worker_id})

    async def close(self) -> None:
        await self._http.aclose()
