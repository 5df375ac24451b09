"""Real processes: a server (``triggerfish server``) and workers (``triggerfish worker``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import support
from tests.conftest import BACKENDS, create_key
from triggerfish import Triggerfish
from triggerfish.store.db import Database, sqlite_url
from triggerfish.store.migrate import upgrade


@dataclass
class Stack:
    server: support.ServerProc
    key: str
    client: Triggerfish
    logs: Path
    backend: str

    def worker(self, **kwargs: object) -> support.WorkerProc:
        return support.start_worker(self.server, self.key, self.logs, **kwargs)  # type: ignore[arg-type]


def make_db(backend: str, folder: Path, template: str | None) -> tuple[str, str | None]:
    if backend == "sqlite":
        url = sqlite_url(folder / "e2e.db")

        async def migrate() -> None:
            db = Database(url)
            await upgrade(db)
            await db.dispose()

        asyncio.run(migrate())
        return url, None
    assert template
    name = support.new_pg_database(template)
    return support.pg_url(name), name


@pytest.fixture
def fresh_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A server on a fresh database of the parametrised backend; no worker yet."""
    backend = request.param if hasattr(request, "param") else "sqlite"
    template = request.getfixturevalue("pg_template") if backend == "postgresql" else None
    url, pg_name = make_db(backend, tmp_path, template)
    key = create_key(url)
    server = support.start_server(url, tmp_path)
    client = Triggerfish(api_url=server.url, secret_key=key)
    try:
        yield Stack(server, key, client, tmp_path, backend)
    finally:
        client.close()
        server.stop()
        if pg_name:
            support.drop_pg_database(pg_name)


@pytest.fixture(scope="module", params=BACKENDS)
def shared_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One server + one worker (concurrency 4) per backend, shared by a module's tests."""
    backend = request.param
    folder = tmp_path_factory.mktemp(f"stack-{backend}")
    template = request.getfixturevalue("pg_template") if backend == "postgresql" else None
    url, pg_name = make_db(backend, folder, template)
    key = create_key(url)
    server = support.start_server(url, folder)
    worker = support.start_worker(server, key, folder, concurrency=4)
    client = Triggerfish(api_url=server.url, secret_key=key)
    try:
        with support.processes_stopped(worker, server):
            yield Stack(server, key, client, folder, backend)
    finally:
        client.close()
        if pg_name:
            support.drop_pg_database(pg_name)
