"""Fixtures: a fresh database per test on SQLite and PostgreSQL, engines, real processes.

PostgreSQL tests clone a template database migrated once per session; if
PostgreSQL is down they fail and say how to start it, never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import support
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.store.db import Database, sqlite_url
from triggerfish.store.migrate import upgrade

BACKENDS = ["sqlite", "postgresql"]

#: ``--slow``: the hypothesis tests (state machines included) try this many times
#: as many examples
SLOW_FACTOR = 20
settings.register_profile("slow", max_examples=100 * SLOW_FACTOR, deadline=None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help=f"run the hypothesis tests and state machines with {SLOW_FACTOR}x the examples",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--slow"):
        settings.load_profile("slow")
        support.EXAMPLES_FACTOR = SLOW_FACTOR


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--slow``: each test may take ``SLOW_FACTOR`` times its usual time limit, as its
    hypothesis examples are that many times as many."""
    if not config.getoption("--slow"):
        return
    default = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        limit = float(marker.args[0]) if marker is not None and marker.args else default
        if limit:
            # before any marker of its own: pytest-timeout reads the closest one
            item.add_marker(pytest.mark.timeout(limit * SLOW_FACTOR), append=False)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    name = f"tf_template_{os.getpid()}"
    support.pg_execute(f'DROP DATABASE IF EXISTS "{name}"')
    support.pg_execute(f'CREATE DATABASE "{name}"')

    async def migrate() -> None:
        db = Database(support.pg_url(name))
        try:
            await upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(migrate())
    yield name
    support.drop_pg_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session; each test gets a copy of it."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"

    async def migrate() -> None:
        db = Database(sqlite_url(path))
        try:
            await upgrade(db)
        finally:
            await db.dispose()  # the last connection's close folds the WAL into the file

    asyncio.run(migrate())
    return path


def _fresh_db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield sqlite_url(path)
        return
    template = request.getfixturevalue("pg_template")
    name = support.new_pg_database(template)
    try:
        yield support.pg_url(name)
    finally:
        support.drop_pg_database(name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database: SQLite file or PostgreSQL clone."""
    yield from _fresh_db(request.param, tmp_path, request)


@pytest.fixture
def pg_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from _fresh_db("postgresql", tmp_path, request)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@contextlib.asynccontextmanager
async def started_engine(
    db_url: str, clock: ManualClock, *, maintenance_interval: float = 0.05
) -> AsyncIterator[Engine]:
    """An engine on ``db_url`` with a manual clock and no background loop."""
    eng = Engine.create(
        ServerSettings(
            database_url=db_url, heartbeat_timeout=30, maintenance_interval=maintenance_interval
        ),
        clock=clock,
    )
    await eng.start(background=False)
    await eng.environments.bootstrap()
    try:
        yield eng
    finally:
        await eng.close()


@pytest.fixture
async def engine(db_url: str, clock: ManualClock) -> AsyncIterator[Engine]:
    """An engine on a fresh database with a manual clock and no background loop."""
    async with started_engine(db_url, clock) as eng:
        yield eng


def create_key(db_url: str, env: str = "dev") -> str:
    """A fresh secret key for ``env`` (bootstrapping the project if needed)."""

    async def go() -> str:
        eng = Engine.create(ServerSettings(database_url=db_url))
        await eng.start(background=False)
        try:
            await eng.environments.bootstrap()
            key, _ = await eng.environments.create_key(env, "test")
            return key
        finally:
            await eng.close()

    return asyncio.run(go())
