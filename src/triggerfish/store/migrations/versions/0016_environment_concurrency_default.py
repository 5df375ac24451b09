"""the environment's concurrency default from the project configuration, and whether
a limit set at run time overrides it

Revision ID: 0016
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
