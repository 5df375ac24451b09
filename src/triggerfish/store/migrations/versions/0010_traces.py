"""observability: the span store, the caller's trace context on runs, an index on a
run's children, alert rules and their deliveries

Revision ID: 0010
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_HAS_PARENT = "parent_run_id IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_context", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_runs_parent",
        "runs",
        ["parent_run_id"],
        postgresql_where=sa.text(_HAS_PARENT),
        sqlite_where=sa.text(_HAS_PARENT),
    )
    op.create_table(
        "run_spans",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("parent_span_id", sa.String(length=16), nullable=True),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=True),
        sa.Column("start_time", sa.Float(), nullable=False),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "span_id", name=op.f("pk_run_spans")),
    )
    op.create_index("ix_run_spans_run_start", "run_spans", ["run_id", "start_time"])
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=True),
        sa.Column("throttle", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_rules")),
    )
    op.create_index("ix_alert_rules_env", "alert_rules", ["environment_id", "id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("rule_id", sa.String(length=40), nullable=False),
        sa.Column("dedup_key", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_alert_deliveries_dedup_key")),
    )
    op.create_index(
        "ix_alert_deliveries_due",
        "alert_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'PENDING'"),
        sqlite_where=sa.text("status = 'PENDING'"),
    )
    op.create_index("ix_alert_deliveries_env", "alert_deliveries", ["environment_id", "id"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alert_rules")
    op.drop_index("ix_run_spans_run_start", table_name="run_spans")
    op.drop_table("run_spans")
    op.drop_index("ix_runs_parent", table_name="runs")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("trace_context")
