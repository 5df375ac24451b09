"""Fixtures of the API tests: a real server on a free port with a registered worker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from tests import support
from triggerfish.cli._serve import make_server
from triggerfish.engine import Engine
from triggerfish.worker.api_client import WorkerApi

MANIFEST = {
    "id": "job",
    "retry": {"max_attempts": 3, "min_delay": 0, "max_delay": 0, "factor": 1, "jitter": 0},
    "machine": "micro",
    "queue": {"name": "task/job", "concurrency_limit": None},
}


@dataclass
class Served:
    url: str
    key: str
    http: httpx.AsyncClient
    api: WorkerApi
    worker_id: str

    async def trigger(self, n: int) -> list[str]:
        ids = []
        for i in range(n):
            r = await self.http.post("/api/v1/tasks/job/trigger", json={"payload": {"i": i}})
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
        return ids

    async def status(self, run_id: str) -> str:
        return str((await self.http.get(f"/api/v3/runs/{run_id}")).json()["status"])


@contextlib.asynccontextmanager
async def serve(engine: Engine) -> AsyncIterator[Served]:
    """A real server (uvicorn) of ``engine`` on a free port of 127.0.0.1, and a
    registered worker."""
    key, _ = await engine.environments.create_key("dev", "test")
    port = support.free_port()
    server = make_server(engine, "127.0.0.1", port)
    serving = await support.serve_in_loop(server)
    url = f"http://127.0.0.1:{port}"
    api = WorkerApi(url, key)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers) as http:
            registered = await api.register(
                {"version": "v1", "name": "w", "concurrency": 2, "tasks": [MANIFEST]}
            )
            yield Served(url, key, http, api, registered["worker_id"])
    finally:
        await api.close()
        await support.stop_serving(server, serving)


@pytest.fixture
async def served(engine: Engine) -> AsyncIterator[Served]:
    """A real server (uvicorn) on a free port of 127.0.0.1, and a registered worker."""
    async with serve(engine) as got:
        yield got
