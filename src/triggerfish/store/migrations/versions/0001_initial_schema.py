"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 08:01:38.682789
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("ref", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("ref", name=op.f("uq_projects_ref")),
    )
    op.create_table(
        "run_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("attempt_id", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_events")),
    )
    with op.batch_alter_table("run_events", schema=None) as batch_op:
        batch_op.create_index("ix_run_events_run", ["run_id", "id"], unique=False)

    op.create_table(
        "run_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("stream", sa.String(length=8), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_logs")),
    )
    with op.batch_alter_table("run_logs", schema=None) as batch_op:
        batch_op.create_index("ix_run_logs_run", ["run_id", "id"], unique=False)

    op.create_table(
        "environments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("slug", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_environments_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_environments")),
        sa.UniqueConstraint("project_id", "slug", name=op.f("uq_environments_project_id_slug")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("display", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_api_keys_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_table(
        "queues",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("paused", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_queues_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queues")),
        sa.UniqueConstraint("environment_id", "name", name=op.f("uq_queues_environment_id_name")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("task_identifier", sa.String(length=128), nullable=False),
        sa.Column("queue_name", sa.String(length=128), nullable=False),
        sa.Column("concurrency_key", sa.String(length=512), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("previous_status", sa.String(length=20), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("payload_type", sa.String(length=64), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("run_metadata", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key_raw", sa.String(length=512), nullable=True),
        sa.Column("idempotency_key_expires_at", sa.Float(), nullable=True),
        sa.Column("machine", sa.String(length=16), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("max_duration", sa.Float(), nullable=True),
        sa.Column("priority", sa.Float(), server_default=sa.text("0"), nullable=False),
        sa.Column("ttl", sa.String(length=32), nullable=True),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("failure_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("current_attempt_id", sa.String(length=40), nullable=True),
        sa.Column("worker_id", sa.String(length=40), nullable=True),
        sa.Column("locked_version", sa.String(length=64), nullable=True),
        sa.Column("available_at", sa.Float(), nullable=False),
        sa.Column("order_key", sa.Float(), nullable=False),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("expires_at", sa.Float(), nullable=True),
        sa.Column("parent_run_id", sa.String(length=40), nullable=True),
        sa.Column("root_run_id", sa.String(length=40), nullable=True),
        sa.Column("batch_id", sa.String(length=40), nullable=True),
        sa.Column("depth", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("trigger_function", sa.String(length=24), nullable=False),
        sa.Column("is_test", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("delayed_until", sa.DateTime(), nullable=True),
        sa.Column("expired_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_runs_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_active",
            ["environment_id", "queue_name"],
            unique=False,
            postgresql_where=sa.text("status IN ('DEQUEUED', 'EXECUTING')"),
            sqlite_where=sa.text("status IN ('DEQUEUED', 'EXECUTING')"),
        )
        batch_op.create_index(
            "ix_runs_delayed",
            ["available_at"],
            unique=False,
            postgresql_where=sa.text("status = 'DELAYED'"),
            sqlite_where=sa.text("status = 'DELAYED'"),
        )
        batch_op.create_index("ix_runs_env_id", ["environment_id", "id"], unique=False)
        batch_op.create_index(
            "ix_runs_env_status_id", ["environment_id", "status", "id"], unique=False
        )
        batch_op.create_index(
            "ix_runs_env_task_id", ["environment_id", "task_identifier", "id"], unique=False
        )
        batch_op.create_index(
            "ix_runs_expiry",
            ["expires_at"],
            unique=False,
            postgresql_where=sa.text("expires_at IS NOT NULL AND status IN ('QUEUED', 'DELAYED')"),
            sqlite_where=sa.text("expires_at IS NOT NULL AND status IN ('QUEUED', 'DELAYED')"),
        )
        batch_op.create_index(
            "ix_runs_idempotency",
            ["environment_id", "task_identifier", "idempotency_key"],
            unique=True,
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )
        batch_op.create_index(
            "ix_runs_lease",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text("status IN ('DEQUEUED', 'EXECUTING')"),
            sqlite_where=sa.text("status IN ('DEQUEUED', 'EXECUTING')"),
        )
        batch_op.create_index(
            "ix_runs_queued",
            ["environment_id", "order_key"],
            unique=False,
            postgresql_where=sa.text("status = 'QUEUED'"),
            sqlite_where=sa.text("status = 'QUEUED'"),
        )

    op.create_table(
        "task_versions",
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("task_identifier", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_task_versions_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint(
            "environment_id", "task_identifier", "version", name=op.f("pk_task_versions")
        ),
    )
    with op.batch_alter_table("task_versions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_versions_latest",
            ["environment_id", "task_identifier", "registered_at"],
            unique=False,
        )

    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("tasks", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_workers_environment_id_environments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("worker_id", sa.String(length=40), nullable=True),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_attempts_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index("ix_attempts_run", ["run_id", "number"], unique=False)

    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("environment_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_tags_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "tag", name=op.f("pk_run_tags")),
    )
    with op.batch_alter_table("run_tags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_run_tags_env_tag", ["environment_id", "tag", "run_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("run_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_run_tags_env_tag")

    op.drop_table("run_tags")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_run")

    op.drop_table("attempts")
    op.drop_table("workers")
    with op.batch_alter_table("task_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_task_versions_latest")

    op.drop_table("task_versions")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_runs_queued",
            postgresql_where=sa.text("status = 'QUEUED'"),
            sqlite_where=sa.text("status = 'QUEUED'"),
        )
        batch_op.drop_index(
            "ix_runs_lease",
            postgresql_where=sa.text("status IN ('DEQUEUED', 'EXECUTING')"),
            sqlite_where=sa.text("status IN ('DEQUEUED', 'EXECUTING')"),
        )
        batch_op.drop_index(
            "ix_runs_idempotency",
            postgresql_where=sa.text("idempotency_key IS NOT NULL"),
            sqlite_where=sa.text("idempotency_key IS NOT NULL"),
        )
        batch_op.drop_index(
            "ix_runs_expiry",
            postgresql_where=sa.text("expires_at IS NOT NULL AND status IN ('QUEUED', 'DELAYED')"),
            sqlite_where=sa.text("expires_at IS NOT NULL AND status IN ('QUEUED', 'DELAYED')"),
        )
        batch_op.drop_index("ix_runs_env_task_id")
        batch_op.drop_index("ix_runs_env_status_id")
        batch_op.drop_index("ix_runs_env_id")
        batch_op.drop_index(
            "ix_runs_delayed",
            postgresql_where=sa.text("status = 'DELAYED'"),
            sqlite_where=sa.text("status = 'DELAYED'"),
        )
        batch_op.drop_index(
            "ix_runs_active",
            postgresql_where=sa.text("status IN ('DEQUEUED', 'EXECUTING')"),
            sqlite_where=sa.text("status IN ('DEQUEUED', 'EXECUTING')"),
        )

    op.drop_table("runs")
    op.drop_table("queues")
    op.drop_table("api_keys")
    op.drop_table("environments")
    with op.batch_alter_table("run_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_run_logs_run")

    op.drop_table("run_logs")
    with op.batch_alter_table("run_events", schema=None) as batch_op:
        batch_op.drop_index("ix_run_events_run")

    op.drop_table("run_events")
    op.drop_table("projects")
