"""The base of the engine's hypothesis state machines: a fresh, migrated store per example."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from tests import support

T = TypeVar("T")

#: how many times its usual examples a state machine tries (``--slow`` sets it)
EXAMPLES_FACTOR = 1


class StoreMachine(RuleBasedStateMachine):
    """Opens ``db_url`` for each example on ``backend``; subclasses build engines on it.

    :func:`run_machine_on` sets ``backend`` and ``pg_template`` per store.
    A subclass's ``teardown`` closes its engines, then calls :meth:`release_store`.
    """

    backend = "sqlite"
    pg_template = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self._tmp: str | None = None
        self._pg_name: str | None = None
        if self.backend == "sqlite":
            self._tmp = tempfile.mkdtemp()
            self.db_url = support.new_sqlite_database(Path(self._tmp) / "machine.db")
        else:
            self._pg_name = support.new_pg_database(self.pg_template)
            self.db_url = support.pg_url(self._pg_name)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def release_store(self) -> None:
        self.loop.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._pg_name:
            support.drop_pg_database(self._pg_name)


def run_machine_on(
    machine: type[StoreMachine],
    backend: str,
    machine_settings: settings,
    pg_template: str = "",
) -> None:
    """Run a state machine whose class reads ``backend``/``pg_template``.

    Each machine opens its own database per example from these two attributes,
    so one class serves both stores.
    """
    if EXAMPLES_FACTOR != 1:  # ``--slow``
        examples = machine_settings.max_examples * EXAMPLES_FACTOR
        machine_settings = settings(machine_settings, max_examples=examples)
    bound = type(
        f"{machine.__name__}On{backend}",
        (machine,),
        {"backend": backend, "pg_template": pg_template},
    )
    run_state_machine_as_test(bound, settings=machine_settings)
