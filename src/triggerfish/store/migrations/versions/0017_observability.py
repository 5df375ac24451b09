"""observability: shared positions of the servers' history walks (one export per
finished run's spans, whichever server takes it)

Revision ID: 0017
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "history_cursors",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_history_cursors")),
    )


def downgrade() -> None:
    op.drop_table("history_cursors")
