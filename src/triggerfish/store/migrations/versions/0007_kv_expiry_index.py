"""an index on the expiry of kv entries, for the maintenance loop's purge

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_kv_entries_expires_at", "kv_entries", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_kv_entries_expires_at", table_name="kv_entries")
