"""Projects, environments and API keys: bootstrap, authentication, key management."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row

from triggerfish._domain.times import to_datetime
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import AuthenticationError, UserError
from triggerfish.store import envs as env_store


@dataclass(frozen=True)
class Environment:
    id: str
    slug: str
    project_id: str
    project_ref: str


class Environments:
    #: how long a verified key is trusted without asking the store again: keeps
    #: the hot path to zero queries while revocation still takes effect quickly
    CACHE_SECONDS = 5.0

    def __init__(self, res: EngineResources) -> None:
        self.res = res
        self._cache: dict[str, tuple[float, Environment]] = {}

    async def bootstrap(self, project_name: str = "triggerfish") -> None:
        """Make sure the project and its dev and prod environments exist."""
        async with self.res.db.write() as conn:
            await env_store.ensure_project(conn, project_name, to_datetime(self.res.clock.now()))

    async def authenticate(self, key: str) -> Environment:
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self.res.db.read() as conn:
            row = await env_store.environment_for_key(conn, key)
        if row is None:
            self._cache.pop(key, None)
            raise AuthenticationError("Invalid API Key")
        env = Environment(row.id, row.slug, row.project_id, row.project_ref)
        self._cache[key] = (time.monotonic() + self.CACHE_SECONDS, env)
        return env

    async def by_slug(self, slug: str) -> Environment:
        async with self.res.db.read() as conn:
            row = await env_store.environment_by_slug(conn, slug)
        if row is None:
            raise UserError(f"no environment {slug!r}; known: dev, prod")
        return Environment(row.id, row.slug, row.project_id, row.project_ref)

    async def create_key(self, slug: str, name: str) -> tuple[str, Row[Any]]:
        env = await self.by_slug(slug)
        async with self.res.db.write() as conn:
            return await env_store.create_key(
                conn, env.id, slug, name, to_datetime(self.res.clock.now())
            )

    async def adopt_key(self, slug: str, key: str, name: str) -> None:
        env = await self.by_slug(slug)
        async with self.res.db.write() as conn:
            await env_store.store_known_key(
                conn, env.id, key, name, to_datetime(self.res.clock.now())
            )

    async def list_keys(self) -> list[Row[Any]]:
        async with self.res.db.read() as conn:
            return await env_store.list_keys(conn)

    async def revoke_key(self, key_id: str) -> bool:
        async with self.res.db.write() as conn:
            done = await env_store.revoke_key(conn, key_id, to_datetime(self.res.clock.now()))
        self._cache.clear()
        return done
