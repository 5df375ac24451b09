"""The base of the engine's hypothesis state machines: a fresh, migrated store per example."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis.stateful import RuleBasedStateMachine

from tests import support
from triggerfish.store.db import Database, sqlite_url
from triggerfish.store.migrate import upgrade


class StoreMachine(RuleBasedStateMachine):
    """Opens ``db_url`` for each example on ``backend``; subclasses build engines on it.

    ``support.run_machine_on`` sets ``backend`` and ``pg_template`` per store.
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
            self.db_url = sqlite_url(Path(self._tmp) / "machine.db")
            self.run(_migrate(self.db_url))
        else:
            self._pg_name = support.new_pg_database(self.pg_template)
            self.db_url = support.pg_url(self._pg_name)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def release_store(self) -> None:
        self.loop.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
        if self._pg_name:
            support.drop_pg_database(self._pg_name)


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()
