"""Alembic, driven from code: ``triggerfish db migrate`` and the server's start-up check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from triggerfish.store.db import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


async def current_revision(db: Database) -> str | None:
    def read(sync_conn: Connection) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: newest)."""

    def run(sync_conn: Connection, *_: Any) -> None:
        command.upgrade(alembic_config(sync_conn), revision)

    async with db.write() as conn:
        await conn.run_sync(run)
