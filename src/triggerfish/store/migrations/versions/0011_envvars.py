"""environment variables per environment, sealed by the server keyring

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


def downgrade() -> None:
    op.drop_table("env_vars")
