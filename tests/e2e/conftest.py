"""Real processes: a server (``triggerfish server``) and workers (``triggerfish worker``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import support


def _template(request: pytest.FixtureRequest, backend: str) -> str | None:
    return request.getfixturevalue("pg_template") if backend == "postgresql" else None


@pytest.fixture
def fresh_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[support.Stack]:
    """A server on a fresh database of the parametrised backend; no worker yet."""
    backend = request.param if hasattr(request, "param") else "sqlite"
    with support.open_stack(backend, tmp_path, _template(request, backend)) as stack:
        yield stack


@pytest.fixture(scope="module", params=support.BACKENDS)
def shared_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[support.Stack]:
    """One server + one worker (concurrency 4) per backend, shared by a module's tests."""
    backend = request.param
    folder = tmp_path_factory.mktemp(f"stack-{backend}")
    template = _template(request, backend)
    with support.open_stack(backend, folder, template, workers=[{"concurrency": 4}]) as stack:
        yield stack
