"""traces: the span store, the caller's trace context on runs, an index on a run's children

Revision ID: 0010
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0011"
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


def downgrade() -> None:
    op.drop_index("ix_run_spans_run_start", table_name="run_spans")
    op.drop_table("run_spans")
    op.drop_index("ix_runs_parent", table_name="runs")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("trace_context")
