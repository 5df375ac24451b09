"""cron schedules

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-25 00:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("task_identifier", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=512), nullable=True),
        sa.Column("deduplication_key", sa.String(length=512), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("(true)"), nullable=False),
        sa.Column("next_fire_at", sa.Float(), nullable=True),
        sa.Column("last_fired_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_schedules_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.create_index(
            "ix_schedules_due",
            ["next_fire_at"],
            unique=False,
            postgresql_where=sa.text("next_fire_at IS NOT NULL"),
            sqlite_where=sa.text("next_fire_at IS NOT NULL"),
        )
        batch_op.create_index("ix_schedules_env_id", ["environment_id", "id"], unique=False)
        batch_op.create_index(
            "ix_schedules_dedup",
            ["environment_id", "deduplication_key"],
            unique=True,
            postgresql_where=sa.text("deduplication_key IS NOT NULL"),
            sqlite_where=sa.text("deduplication_key IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_schedules_declarative",
            ["environment_id", "task_identifier"],
            unique=True,
            postgresql_where=sa.text("type = 'DECLARATIVE'"),
            sqlite_where=sa.text("type = 'DECLARATIVE'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_schedules_declarative",
            postgresql_where=sa.text("type = 'DECLARATIVE'"),
            sqlite_where=sa.text("type = 'DECLARATIVE'"),
        )
        batch_op.drop_index(
            "ix_schedules_dedup",
            postgresql_where=sa.text("deduplication_key IS NOT NULL"),
            sqlite_where=sa.text("deduplication_key IS NOT NULL"),
        )
        batch_op.drop_index("ix_schedules_env_id")
        batch_op.drop_index(
            "ix_schedules_due",
            postgresql_where=sa.text("next_fire_at IS NOT NULL"),
            sqlite_where=sa.text("next_fire_at IS NOT NULL"),
        )

    op.drop_table("schedules")
