"""A live server in the test's loop that a test can stop and start again on the same port,
with a worker registered over HTTP that the test drives by hand (claim, log, complete)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from tests import support
from triggerfish.cli._serve import EmbeddedServer, make_server
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock

MANIFEST = {
    "id": "job",
    "retry": {"max_attempts": 1, "min_delay": 0, "max_delay": 0, "factor": 1, "jitter": 0},
    "machine": "micro",
    "queue": {"name": "task/job", "concurrency_limit": None},
}


@dataclass
class Live:
    engine: Engine
    port: int
    key: str
    server: EmbeddedServer | None = None
    serving: asyncio.Task[None] | None = None
    worker_id: str = ""
    http: httpx.AsyncClient = field(default_factory=httpx.AsyncClient)

    @property
    def clock(self) -> ManualClock:
        clock = self.engine.res.clock
        assert isinstance(clock, ManualClock)
        return clock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a CLI process needs to reach this server."""
        return {"TRIGGERFISH_API_URL": self.url, "TRIGGERFISH_SECRET_KEY": self.key}

    async def start(self) -> None:
        self.server = make_server(self.engine, "127.0.0.1", self.port)
        self.serving = await support.serve_in_loop(self.server)

    async def stop(self) -> None:
        if self.server is not None and self.serving is not None:
            await support.stop_serving(self.server, self.serving)
        self.server = self.serving = None

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        r = await self.http.post(
            self.url + path, json=body, headers={"Authorization": f"Bearer {self.key}"}
        )
        assert r.status_code == 200, r.text
        return r.json()

    async def register(
        self, tasks: list[dict[str, Any]] | None = None, version: str = "v1"
    ) -> None:
        body = {"version": version, "name": "w", "concurrency": 4, "tasks": tasks or [MANIFEST]}
        self.worker_id = (await self.post("/worker/v1/register", body))["worker_id"]

    async def trigger(self, task: str = "job", payload: Any = None) -> str:
        return str((await self.post(f"/api/v1/tasks/{task}/trigger", {"payload": payload}))["id"])

    async def claim(self) -> dict[str, Any]:
        body = {"worker_id": self.worker_id, "max": 1, "wait": 0, "start": 1}
        runs = (await self.post("/worker/v1/dequeue", body))["runs"]
        assert len(runs) == 1, runs
        return dict(runs[0])

    async def log(self, claimed: dict[str, Any], message: str) -> None:
        body = {"attempt_id": claimed["attempt_id"], "lines": [{"message": message}]}
        await self.post("/worker/v1/logs", body)

    async def finish(self, claimed: dict[str, Any], ok: bool = True, output: Any = None) -> None:
        done: dict[str, Any] = {"attempt_id": claimed["attempt_id"], "run_id": claimed["run_id"]}
        done |= (
            {"ok": True, "output": output}
            if ok
            else {
                "ok": False,
                "error": {"name": "Boom", "message": "it broke"},
            }
        )
        await self.post("/worker/v1/reports", {"starts": [], "completions": [done]})


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    return support.new_sqlite_database(tmp_path / "cli.db")


@pytest.fixture
async def live(sqlite_db: str) -> AsyncIterator[Live]:
    """A server on a fresh SQLite store (these tests are about the client side)."""
    url = sqlite_db
    async with support.started_engine(url, ManualClock()) as engine:
        key, _ = await engine.environments.create_key("dev", "test")
        served = Live(engine, support.free_port(), key)
        await served.start()
        await served.register()
        try:
            yield served
        finally:
            await served.stop()
            await served.http.aclose()


CLEARED = ("TRIGGERFISH_API_URL", "TRIGGERFISH_SECRET_KEY", "TRIGGERFISH_ENV", "DATABASE_URL")


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI in this process (a thread of it, while the test's loop serves)."""
    from triggerfish.cli.main import app

    cleared: dict[str, str | None] = {name: None for name in CLEARED}
    return CliRunner().invoke(app, list(args), env={**cleared, "COLUMNS": "200", **(env or {})})


async def invoke_async(*args: str, env: dict[str, str] | None = None) -> Result:
    return await asyncio.to_thread(invoke, *args, env=env)
