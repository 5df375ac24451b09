"""Fixtures of the webhook tests: a real server on 127.0.0.1 and an in-process worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests import support
from tests.support.in_process import InProcessWorker
from triggerfish.cli._serve import make_server
from triggerfish.engine import Engine


@dataclass
class Site:
    url: str
    key: str
    env_id: str
    engine: Engine
    #: the API, with the environment's key
    api: httpx.AsyncClient
    #: a source sending deliveries: no key
    public: httpx.AsyncClient

    def worker(self, registry: object) -> InProcessWorker:
        return InProcessWorker(self.engine, registry, self.env_id)  # type: ignore[arg-type]

    async def run_count(self) -> int:
        r = await self.api.get("/api/v1/runs", params={"page[size]": 100})
        return len(r.json()["data"])


@pytest.fixture
async def site(engine: Engine) -> AsyncIterator[Site]:
    key, _ = await engine.environments.create_key("dev", "test")
    env = await engine.environments.by_slug("dev")
    port = support.free_port()
    server = make_server(engine, "127.0.0.1", port)
    serving = await support.serve_in_loop(server)
    url = f"http://127.0.0.1:{port}"
    try:
        async with (
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}) as api,
            httpx.AsyncClient(base_url=url) as public,
        ):
            yield Site(url, key, env.id, engine, api, public)
    finally:
        await support.stop_serving(server, serving)
