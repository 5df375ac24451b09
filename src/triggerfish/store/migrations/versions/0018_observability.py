"""observability: shared positions of the servers' history walks (one export per
finished run's spans, whichever server takes it)

Revision ID: 0018
Revises: 0017 (re-chained on main's head; the branch took 0017 on 0010)
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
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
