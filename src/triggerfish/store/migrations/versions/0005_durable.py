"""durable execution: journal, waitpoints, events, key-value store

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 00:00:22.379851
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "events",
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("run_ids", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("environment_id", "id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_env_name", ["environment_id", "name", "created_at"], unique=False
        )

    op.create_table(
        "kv_entries",
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("environment_id", "key", name=op.f("pk_kv_entries")),
    )
    op.create_table(
        "run_journal",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("result_blob", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("failures", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_run_journal")),
    )
    op.create_table(
        "run_journal_blobs",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_run_journal_blobs")),
    )
    op.create_table(
        "waitpoint_waiters",
        sa.Column("waitpoint_id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("waitpoint_id", "run_id", name=op.f("pk_waitpoint_waiters")),
    )
    with op.batch_alter_table("waitpoint_waiters", schema=None) as batch_op:
        batch_op.create_index("ix_waitpoint_waiters_run", ["run_id", "seq"], unique=False)

    op.create_table(
        "waitpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column(
            "output_is_error", sa.Boolean(), server_default=sa.text("(false)"), nullable=False
        ),
        sa.Column("idempotency_key", sa.String(length=512), nullable=True),
        sa.Column("idempotency_key_expires_at", sa.Float(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("callback_secret", sa.String(length=64), nullable=True),
        sa.Column("child_run_id", sa.String(length=40), nullable=True),
        sa.Column("event_name", sa.String(length=256), nullable=True),
        sa.Column("event_filter", sa.JSON(), nullable=True),
        sa.Column("owner_run_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitpoints")),
    )
    with op.batch_alter_table("waitpoints", schema=None) as batch_op:
        batch_op.create_index(
            "ix_waitpoints_child",
            ["child_run_id"],
            unique=False,
            postgresql_where=sa.text("child_run_id IS NOT NULL"),
            sqlite_where=sa.text("child_run_id IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_waitpoints_due",
            ["due_at"],
            unique=False,
            postgresql_where=sa.text("status = 'PENDING' AND due_at IS NOT NULL"),
            sqlite_where=sa.text("status = 'PENDING' AND due_at IS NOT NULL"),
        )
        batch_op.create_index("ix_waitpoints_env_id", ["environment_id", "id"], unique=False)
        batch_op.create_index(
            "ix_waitpoints_event",
            ["environment_id", "event_name"],
            unique=False,
            postgresql_where=sa.text("status = 'PENDING' AND kind = 'EVENT'"),
            sqlite_where=sa.text("status = 'PENDING' AND kind = 'EVENT'"),
        )
        batch_op.create_index(
            "ix_waitpoints_idempotency",
            ["environment_id", "idempotency_key"],
            unique=True,
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )


def downgrade() -> None:

    with op.batch_alter_table("waitpoints", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_waitpoints_idempotency",
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )
        batch_op.drop_index(
            "ix_waitpoints_event",
            postgresql_where=sa.text("status = 'PENDING' AND kind = 'EVENT'"),
            sqlite_where=sa.text("status = 'PENDING' AND kind = 'EVENT'"),
        )
        batch_op.drop_index("ix_waitpoints_env_id")
        batch_op.drop_index(
            "ix_waitpoints_due",
            postgresql_where=sa.text("status = 'PENDING' AND due_at IS NOT NULL"),
            sqlite_where=sa.text("status = 'PENDING' AND due_at IS NOT NULL"),
        )
        batch_op.drop_index(
            "ix_waitpoints_child",
            postgresql_where=sa.text("child_run_id IS NOT NULL"),
            sqlite_where=sa.text("child_run_id IS NOT NULL"),
        )

    op.drop_table("waitpoints")
    with op.batch_alter_table("waitpoint_waiters", schema=None) as batch_op:
        batch_op.drop_index("ix_waitpoint_waiters_run")

    op.drop_table("waitpoint_waiters")
    op.drop_table("run_journal_blobs")
    op.drop_table("run_journal")
    op.drop_table("kv_entries")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_env_name")

    op.drop_table("events")
