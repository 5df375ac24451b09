"""step display fields and retry history; events deduplicated per name; correlated
and validated event and token waits

Revision ID: 0015
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0007"
branch_labels = None
depends_on = None


def _rekey_events(key: list[str]) -> None:
    """Give ``events`` the primary key ``key`` (on SQLite by recreating the table)."""
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("pk_events", type_="primary")
        batch.create_primary_key("pk_events", key)


def upgrade() -> None:
    with op.batch_alter_table("run_journal") as batch:
        batch.add_column(sa.Column("display", sa.JSON()))
        batch.add_column(sa.Column("tries", sa.JSON()))
    with op.batch_alter_table("waitpoints") as batch:
        batch.add_column(sa.Column("event_id", sa.String(128)))
        batch.add_column(sa.Column("schema", sa.JSON()))
    _rekey_events(["environment_id", "name", "id"])


def downgrade() -> None:
    _rekey_events(["environment_id", "id"])
    with op.batch_alter_table("waitpoints") as batch:
        batch.drop_column("schema")
        batch.drop_column("event_id")
    with op.batch_alter_table("run_journal") as batch:
        batch.drop_column("tries")
        batch.drop_column("display")
