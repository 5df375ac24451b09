"""flow control: queue overrides, rate limits, environment limit, fair buckets,
batches, debounce and replay columns

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ACTIVE = "status IN ('DEQUEUED', 'EXECUTING')"


def upgrade() -> None:
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("concurrency_limit", sa.Integer(), nullable=True))

    with op.batch_alter_table("queues", schema=None) as batch_op:
        batch_op.add_column(sa.Column("concurrency_limit_override", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("overridden_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("concurrency_key_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit_count", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rate_limit_period", sa.Float(), nullable=True))

    op.create_table(
        "fair_buckets",
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("queue_name", sa.String(length=128), nullable=False),
        sa.Column("concurrency_key", sa.String(length=512), nullable=False),
        sa.Column("next_tag", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "environment_id", "queue_name", "concurrency_key", name=op.f("pk_fair_buckets")
        ),
    )
    op.create_table(
        "queue_claims",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("queue_name", sa.String(length=128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_claims")),
    )
    op.create_index(
        "ix_queue_claims_window", "queue_claims", ["environment_id", "queue_name", "at"]
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_batches_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
    )
    op.create_index(
        "ix_batches_idempotency",
        "batches",
        ["environment_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
        sqlite_where=sa.text("idempotency_key IS NOT NULL"),
    )

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch_index", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("debounce_key", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("debounce_until", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("replay_of", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("schedule_id", sa.String(length=40), nullable=True))
        batch_op.drop_index("ix_runs_active")
        batch_op.create_index(
            "ix_runs_active",
            ["environment_id", "queue_name", "concurrency_key"],
            unique=False,
            postgresql_where=sa.text(_ACTIVE),
            sqlite_where=sa.text(_ACTIVE),
        )
        batch_op.create_index(
            "ix_runs_active_order",
            ["environment_id", "order_key"],
            unique=False,
            postgresql_where=sa.text(_ACTIVE),
            sqlite_where=sa.text(_ACTIVE),
        )
        batch_op.create_index(
            "ix_runs_debounce",
            ["environment_id", "task_identifier", "debounce_key"],
            unique=True,
            postgresql_where=sa.text("debounce_key IS NOT NULL AND status = 'DELAYED'"),
            sqlite_where=sa.text("debounce_key IS NOT NULL AND status = 'DELAYED'"),
        )
        batch_op.create_index(
            "ix_runs_schedule",
            ["environment_id", "schedule_id", "id"],
            unique=False,
            postgresql_where=sa.text("schedule_id IS NOT NULL"),
            sqlite_where=sa.text("schedule_id IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_runs_batch",
            ["batch_id", "batch_index"],
            unique=True,
            postgresql_where=sa.text("batch_id IS NOT NULL"),
            sqlite_where=sa.text("batch_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_batch")
        batch_op.drop_index("ix_runs_schedule")
        batch_op.drop_index("ix_runs_debounce")
        batch_op.drop_index("ix_runs_active_order")
        batch_op.drop_index("ix_runs_active")
        batch_op.create_index(
            "ix_runs_active",
            ["environment_id", "queue_name"],
            unique=False,
            postgresql_where=sa.text(_ACTIVE),
            sqlite_where=sa.text(_ACTIVE),
        )
        batch_op.drop_column("schedule_id")
        batch_op.drop_column("replay_of")
        batch_op.drop_column("debounce_until")
        batch_op.drop_column("debounce_key")
        batch_op.drop_column("batch_index")
    op.drop_index("ix_batches_idempotency", table_name="batches")
    op.drop_table("batches")
    op.drop_index("ix_queue_claims_window", table_name="queue_claims")
    op.drop_table("queue_claims")
    op.drop_table("fair_buckets")
    with op.batch_alter_table("queues", schema=None) as batch_op:
        for column in (
            "rate_limit_period",
            "rate_limit_count",
            "concurrency_key_limit",
            "overridden_at",
            "concurrency_limit_override",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("environments", schema=None) as batch_op:
        batch_op.drop_column("concurrency_limit")
