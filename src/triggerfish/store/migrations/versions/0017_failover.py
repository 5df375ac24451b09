"""the request key a retried trigger carries (x-trigger-request-idempotency-key) on runs
and batches; the retention sweep's indexes for webhook and alert deliveries

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
    for table in ("runs", "batches"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("request_key", sa.String(128)))
        op.create_index(
            f"ix_{table}_request_key",
            table,
            ["environment_id", "request_key"],
            unique=True,
            postgresql_where=sa.text("request_key IS NOT NULL"),
            sqlite_where=sa.text("request_key IS NOT NULL"),
        )
    op.create_index(
        "ix_webhook_deliveries_env_created", "webhook_deliveries", ["environment_id", "created_at"]
    )
    op.create_index(
        "ix_alert_deliveries_env_created", "alert_deliveries", ["environment_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_env_created", "alert_deliveries")
    op.drop_index("ix_webhook_deliveries_env_created", "webhook_deliveries")
    for table in ("batches", "runs"):
        op.drop_index(f"ix_{table}_request_key", table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("request_key")
