"""Task manifests (what a worker version declared about a task), cached: they never change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.sdk._retry import RetryPolicy
from triggerfish.store import workers as worker_store


class ManifestCache:
    def __init__(self) -> None:
        self._by_version: dict[tuple[str, str, str], dict[str, Any]] = {}

    async def for_version(
        self, conn: AsyncConnection, env_id: str, task_id: str, version: str | None
    ) -> dict[str, Any] | None:
        if version is None:
            return await worker_store.latest_manifest(conn, env_id, task_id)
        key = (env_id, task_id, version)
        cached = self._by_version.get(key)
        if cached is None:
            cached = await worker_store.manifest_for(conn, env_id, task_id, version)
            if cached is None:
                return await worker_store.latest_manifest(conn, env_id, task_id)
            self._by_version[key] = cached
        return cached


def retry_policy(manifest: dict[str, Any] | None) -> RetryPolicy:
    return RetryPolicy.from_json(manifest.get("retry") if manifest else None)
