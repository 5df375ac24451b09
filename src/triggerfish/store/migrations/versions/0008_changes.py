"""the change feed: the changes table and the triggers that write it; run streams; sealed
copies of API keys and spent one-time tokens (public access tokens)

Revision ID: 0008
Revises: 0012 (re-chained on main's head; issue 19a took 0008 on 0007)
"""

import sqlalchemy as sa
from alembic import op

from triggerfish.store.changes import drop_trigger_ddl, trigger_ddl

revision = "0008"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("batch_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_changes_env_id", "changes", ["environment_id", "id"])
    op.create_index("ix_changes_run_id", "changes", ["run_id", "id"])
    op.create_index(
        "ix_changes_batch_id",
        "changes",
        ["batch_id", "id"],
        postgresql_where=sa.text("batch_id IS NOT NULL"),
        sqlite_where=sa.text("batch_id IS NOT NULL"),
    )
    op.create_table(
        "run_stream_chunks",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", "seq", name=op.f("pk_run_stream_chunks")),
    )
    op.add_column("api_keys", sa.Column("key_sealed", sa.Text(), nullable=True))
    op.create_table(
        "public_token_uses",
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_public_token_uses")),
    )
    for statement in trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in drop_trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("public_token_uses")
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.drop_column("key_sealed")
    op.drop_table("run_stream_chunks")
    op.drop_index("ix_changes_batch_id", table_name="changes")
    op.drop_index("ix_changes_run_id", table_name="changes")
    op.drop_index("ix_changes_env_id", table_name="changes")
    op.drop_table("changes")
