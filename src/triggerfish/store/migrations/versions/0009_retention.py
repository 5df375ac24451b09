"""retention: per-environment days, and the indexes the maintenance loop's purge walks

Revision ID: 0009
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("environments", sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_index("ix_runs_retention", "runs", ["environment_id", "finished_at"])
    op.create_index("ix_events_retention", "events", ["environment_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_events_retention", table_name="events")
    op.drop_index("ix_runs_retention", table_name="runs")
    op.drop_column("environments", "retention_days")
