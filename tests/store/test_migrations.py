"""The Alembic migrations and ``store/tables.py`` describe the same schema."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from triggerfish.store.db import Database
from triggerfish.store.migrate import current_revision, head_revision
from triggerfish.store.tables import metadata


def _schema_drift(sync_conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        sync_conn, opts={"compare_type": True, "compare_server_default": False}
    )
    return list(compare_metadata(context, metadata))


async def test_upgrade_head_equals_the_table_metadata(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert await current_revision(db) == head_revision()
        async with db.read() as conn:
            drift = await conn.run_sync(_schema_drift)
        assert drift == [], f"migrations and store/tables.py disagree: {drift}"
    finally:
        await db.dispose()


def test_the_migrations_have_one_head() -> None:
    from alembic.script import ScriptDirectory

    from triggerfish.store.migrate import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"several Alembic heads {heads}: put the new migration on top"
