"""Task manifests (what a worker version declared about a task), cached.

A version's manifest never changes, so it is cached for good. The *latest*
manifest of a task (what a trigger validates against) changes when a worker of
new code registers: this server forgets it at once, other servers after
``LATEST_TTL`` seconds.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.retry import RetryPolicy
from triggerfish.store import workers as worker_store

#: seconds a task's latest manifest is trusted without reading it again
LATEST_TTL = 1.0


class ManifestCache:
    def __init__(self) -> None:
        self._by_version: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._latest: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def cached(self, env_id: str, task_id: str) -> dict[str, Any] | None:
        """``latest`` when it is known without a query, else None."""
        hit = self._latest.get((env_id, task_id))
        if hit is not None and time.monotonic() - hit[0] < LATEST_TTL:
            return hit[1]
        return None

    async def latest(
        self, conn: AsyncConnection, env_id: str, task_id: str
    ) -> dict[str, Any] | None:
        """The manifest of the newest registered version of a task (None: unknown task)."""
        key = (env_id, task_id)
        now = time.monotonic()
        hit = self.cached(env_id, task_id)
        if hit is not None:
            return hit
        manifest = await worker_store.latest_manifest(conn, env_id, task_id)
        if manifest is not None:
            self._latest[key] = (now, manifest)
        return manifest

    def forget(self, env_id: str) -> None:
        """New code registered in ``env_id``: read its latest manifests again."""
        for key in [k for k in self._latest if k[0] == env_id]:
            del self._latest[key]

    async def for_version(
        self, conn: AsyncConnection, env_id: str, task_id: str, version: str | None
    ) -> dict[str, Any] | None:
        if version is None:
            return await self.latest(conn, env_id, task_id)
        key = (env_id, task_id, version)
        cached = self._by_version.get(key)
        if cached is None:
            cached = await worker_store.manifest_for(conn, env_id, task_id, version)
            if cached is None:
                return await self.latest(conn, env_id, task_id)
            self._by_version[key] = cached
        return cached


def retry_policy(manifest: dict[str, Any] | None) -> RetryPolicy:
    return RetryPolicy.from_json(manifest.get("retry") if manifest else None)
