"""Fixtures: a fresh database per test on SQLite and PostgreSQL, engines, real processes.

PostgreSQL tests clone a template database migrated once per session; a test
process keeps its clones for its next tests, emptied as a fresh clone is
(``tests/support``: ``new_pg_database``). If PostgreSQL is down they fail and say
how to start it, never skip.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests import support
from tests.support import machines
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock

BACKENDS = support.BACKENDS

#: ``--slow``: the hypothesis tests (state machines included) try this many times
#: as many examples
SLOW_FACTOR = 20
settings.register_profile("slow", max_examples=100 * SLOW_FACTOR, deadline=None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help=f"run the hypothesis tests and state machines with {SLOW_FACTOR}x the examples, "
        "and the tests marked slow",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--slow"):
        settings.load_profile("slow")
        machines.EXAMPLES_FACTOR = SLOW_FACTOR


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--slow``: each test may take ``SLOW_FACTOR`` times its usual time limit, as its
    hypothesis examples are that many times as many; and tests marked ``slow`` run
    (without it they are skipped, unless chosen with ``-m slow``)."""
    if not config.getoption("--slow"):
        if "slow" not in (config.getoption("-m") or ""):
            skip = pytest.mark.skip(reason="a slow test: run with --slow (or -m slow)")
            for item in items:
                if item.get_closest_marker("slow") is not None:
                    item.add_marker(skip)
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
    """A PostgreSQL database migrated once per session; each test gets a clone of it."""
    name = f"tf_template_{os.getpid()}"
    support.new_pg_template(name)
    yield name
    support.drop_pg_pool(name)
    support.drop_pg_database(name)


def _fresh_db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    template = request.getfixturevalue("pg_template") if backend == "postgresql" else None
    with support.database(backend, tmp_path, template) as url:
        yield url


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


@pytest.fixture
async def engine(db_url: str, clock: ManualClock) -> AsyncIterator[Engine]:
    """An engine on a fresh database with a manual clock and no background loop."""
    async with support.started_engine(db_url, clock) as eng:
        yield eng
