"""The base of the engine's hypothesis state machines: a migrated, empty store per example.

Creating and dropping a PostgreSQL database costs a second or more on a busy
machine, and migrating a SQLite file a fair part of one: a machine's test
prepares one store (``StoreMachine.shared_store``) and each example empties it
instead (PostgreSQL: ``TRUNCATE`` of every table; SQLite: a fresh copy of a
migrated file).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from tests import support
from triggerfish.store import runs as run_store
from triggerfish.store.db import Database, sqlite_url
from triggerfish.store.migrate import upgrade

T = TypeVar("T")

#: how many times its usual examples a state machine tries (``--slow`` sets it)
EXAMPLES_FACTOR = 1


class StoreMachine(RuleBasedStateMachine):
    """Opens ``db_url`` for each example on ``backend``; subclasses build engines on it.

    ``run_machine_on`` sets ``backend`` and ``pg_template`` per store and
    runs the examples inside :meth:`shared_store`. A subclass's ``teardown``
    closes its engines, then calls :meth:`release_store`.
    """

    backend = "sqlite"
    pg_template = ""
    #: the test's store: a PostgreSQL database name, or a migrated SQLite file
    shared = ""

    @classmethod
    @contextlib.contextmanager
    def shared_store(cls) -> Iterator[None]:
        """One store for every example of this test, removed afterwards."""
        if cls.backend == "postgresql":
            cls.shared = support.new_pg_database(cls.pg_template)
            try:
                yield
            finally:
                support.drop_pg_database(cls.shared)
            return
        folder = tempfile.mkdtemp()
        cls.shared = str(Path(folder) / "template.db")
        try:
            asyncio.run(_migrate(sqlite_url(Path(cls.shared))))
            yield
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def __init__(self) -> None:
        super().__init__()
        if not self.shared:
            raise RuntimeError("run a StoreMachine with tests.support.machines.run_machine_on")
        self.loop = asyncio.new_event_loop()
        self._tmp: str | None = None
        if self.backend == "sqlite":
            self._tmp = tempfile.mkdtemp()
            path = Path(self._tmp) / "machine.db"
            shutil.copyfile(self.shared, path)
            self.db_url = sqlite_url(path)
        else:
            self.db_url = support.pg_url(self.shared)
            self.run(_empty(self.db_url, self.shared))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def release_store(self) -> None:
        self.loop.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()


async def _empty(url: str, name: str) -> None:
    """Empty the PostgreSQL clone ``name`` at ``url``, as a fresh clone of the template is."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await support.empty_pg_clone(conn, name)
    finally:
        await conn.close()


class FastPaths:
    """Counts, by the test's own spies, how often a machine took each one-statement
    path, and how often that path did its work (completed or handed over a run).

    ``watch`` wraps the store functions the engine calls; production code is left
    alone.
    """

    #: the store's one-statement variants, by the name this counter gives them
    WATCHED = {
        "claim": "claim_unconstrained",
        "report and claim": "claim_unconstrained_after",
        "hand-off": "insert_and_hand_off_alone",
    }

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.worked: Counter[str] = Counter()

    def watch(self, monkeypatch: pytest.MonkeyPatch) -> FastPaths:
        for name, attr in self.WATCHED.items():
            monkeypatch.setattr(run_store, attr, self._spy(name, getattr(run_store, attr)))
        return self

    def _spy(self, name: str, original: Any) -> Any:
        async def spy(*args: Any, **kw: Any) -> Any:
            result = await original(*args, **kw)
            self.calls[name] += 1
            if _did_work(name, result):
                self.worked[name] += 1
            return result

        return spy

    def __str__(self) -> str:
        return ", ".join(
            f"{name}: {self.worked[name]} of {self.calls[name]} calls did work"
            for name in self.WATCHED
        )


def _did_work(name: str, result: Any) -> bool:
    if name == "claim":  # the claimed runs, or None when constrained
        return bool(result)
    if name == "report and claim":  # (completed run ids, claimed runs or None)
        return bool(result[0])
    return result[1] is not None  # hand-off: (order key, the run claimed or None)


def run_machine_on(
    machine: type[StoreMachine],
    backend: str,
    machine_settings: settings,
    pg_template: str = "",
) -> None:
    """Run a state machine on ``backend``: the examples share one store, emptied for
    each of them, which the machine finds from ``backend`` and ``pg_template``, so
    one class serves both stores."""
    if EXAMPLES_FACTOR != 1:  # ``--slow``
        examples = machine_settings.max_examples * EXAMPLES_FACTOR
        machine_settings = settings(machine_settings, max_examples=examples)
    bound: Any = type(
        f"{machine.__name__}On{backend}",
        (machine,),
        {"backend": backend, "pg_template": pg_template},
    )
    with bound.shared_store():  # one store for all examples
        run_state_machine_as_test(bound, settings=machine_settings)
