"""step display fields and retry history; events deduplicated per name; correlated
and validated event and token waits; the environment's configured concurrency default

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
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("concurrency_limit_default", sa.Integer()))
        batch.add_column(
            sa.Column(
                "concurrency_limit_overridden",
                sa.Boolean(),
                server_default=sa.text("false"),
                nullable=False,
            )
        )
    # a limit set before configuration existed was set at run time: it stays
    op.execute(
        "UPDATE environments SET concurrency_limit_overridden = true "
        "WHERE concurrency_limit IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("concurrency_limit_overridden")
        batch.drop_column("concurrency_limit_default")
    _rekey_events(["environment_id", "id"])
    with op.batch_alter_table("waitpoints") as batch:
        batch.drop_column("schema")
        batch.drop_column("event_id")
    with op.batch_alter_table("run_journal") as batch:
        batch.drop_column("tries")
        batch.drop_column("display")
