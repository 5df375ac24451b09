"""metrics and export: a lease on the span export's claimed batch, so the shared
position moves only after the collector took the batch (another server sends it
again when the claimer stops before that)

Revision ID: 0019_metrics_export
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_metrics_export"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("history_cursors") as batch:
        batch.add_column(sa.Column("lease_holder", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("history_cursors") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_holder")
