"""environment variables per environment, sealed by the server keyring; the
per-item errors of partly refused batches

Revision ID: 0011
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "env_vars",
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("value_box", sa.Text(), nullable=False),
        sa.Column("is_secret", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_env_vars_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("environment_id", "name", name=op.f("pk_env_vars")),
    )

    with op.batch_alter_table("batches") as batch_op:
        batch_op.add_column(sa.Column("errors", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch_op:
        batch_op.drop_column("errors")
    op.drop_table("env_vars")
