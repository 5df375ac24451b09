"""Alembic environment: always driven from code with a connection in ``attributes``."""

from __future__ import annotations

from alembic import context

from triggerfish.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `triggerfish db migrate`, not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
context.run_migrations()
