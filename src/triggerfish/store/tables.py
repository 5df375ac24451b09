"""The schema. Alembic migrations in ``migrations/`` must produce exactly this.

Times shown to people (created, started, finished) are naive UTC ``DateTime``s.
Times the dequeue path compares on every claim (``available_at``,
``lease_expires_at``, ``order_key``) are float epoch seconds: cheap to index and
compare on both dialects.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projects = Table(
    "projects",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("ref", String(40), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

environments = Table(
    "environments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project_id", String(40), ForeignKey("projects.id"), nullable=False),
    Column("slug", String(32), nullable=False),
    Column("created_at", DateTime, nullable=False),
    # caps the runs holding a worker slot across every queue; None: no cap
    Column("concurrency_limit", Integer),
    # the project configuration's default for concurrency_limit (declared by workers);
    # a limit set at run time wins over it until reset
    Column("concurrency_limit_default", Integer),
    Column("concurrency_limit_overridden", Boolean, nullable=False, server_default=text("false")),
    # days a finished run is kept (store/retention.py); None: the server's default
    Column("retention_days", Integer),
    UniqueConstraint("project_id", "slug"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), ForeignKey("environments.id"), nullable=False),
    # sha256 of the whole key; the key itself is shown once and never stored
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("display", String(32), nullable=False),  # e.g. "tr_dev_ab12…"
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    # the key sealed under the keyring (engine/keyring.py): public-access JWTs are
    # HS256 with the secret key, so verifying one needs it; NULL for keys made
    # before migration 0008, which cannot verify JWTs
    Column("key_sealed", Text),
)

queues = Table(
    "queues",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), ForeignKey("environments.id"), nullable=False),
    Column("name", String(128), nullable=False),
    # the limit declared in code (refreshed when a worker registers); None: no limit
    Column("concurrency_limit", Integer),
    # set at run time (API/CLI); wins over the declared limit until reset
    Column("concurrency_limit_override", Integer),
    Column("overridden_at", DateTime),
    # slots each concurrency key may hold; None: the queue's limit
    Column("concurrency_key_limit", Integer),
    # at most rate_limit_count claims in any rate_limit_period seconds
    Column("rate_limit_count", Integer),
    Column("rate_limit_period", Float),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("environment_id", "name"),
)

# Fair dequeue: one row per (queue, concurrency key) that ever had a run. A new
# run's order key starts at max(service clock, the bucket's next tag); each run
# moves its bucket's tag on, so a bucket with a long backlog cannot push the
# runs of other buckets back (start-time fair queuing).
fair_buckets = Table(
    "fair_buckets",
    metadata,
    Column("environment_id", String(40), primary_key=True),
    Column("queue_name", String(128), primary_key=True),
    # "" for runs without a concurrency key
    Column("concurrency_key", String(512), primary_key=True),
    Column("next_tag", Float, nullable=False),
)

# Claims of rate-limited queues, for the sliding window; swept once past it.
queue_claims = Table(
    "queue_claims",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("environment_id", String(40), nullable=False),
    Column("queue_name", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_queue_claims_window", "environment_id", "queue_name", "at"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), ForeignKey("environments.id"), nullable=False),
    Column("run_count", Integer, nullable=False),
    Column("idempotency_key", String(128)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # every item has been received and its run created
    Column("sealed_at", DateTime),
    # items refused one by one (unknown task, invalid payload…): [{index,
    # taskIdentifier, error, errorCode}]; the other items got their runs
    Column("errors", JSON),
    # the request key of the call that made it (x-trigger-request-idempotency-key):
    # a retry of that call answers this batch instead of making another
    Column("request_key", String(128)),
    Index(
        "ix_batches_request_key",
        "environment_id",
        "request_key",
        unique=True,
        postgresql_where=text("request_key IS NOT NULL"),
        sqlite_where=text("request_key IS NOT NULL"),
    ),
    Index(
        "ix_batches_idempotency",
        "environment_id",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
        sqlite_where=text("idempotency_key IS NOT NULL"),
    ),
)

task_versions = Table(
    "task_versions",
    metadata,
    Column("environment_id", String(40), ForeignKey("environments.id"), primary_key=True),
    Column("task_identifier", String(128), primary_key=True),
    Column("version", String(64), primary_key=True),
    Column("manifest", JSON, nullable=False),
    Column("registered_at", DateTime, nullable=False),
    Index("ix_task_versions_latest", "environment_id", "task_identifier", "registered_at"),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), ForeignKey("environments.id"), nullable=False),
    Column("version", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("concurrency", Integer, nullable=False),
    Column("tasks", JSON, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("stopped_at", DateTime),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), ForeignKey("environments.id"), nullable=False),
    Column("task_identifier", String(128), nullable=False),
    Column("queue_name", String(128), nullable=False),
    Column("concurrency_key", String(512)),
    Column("status", String(20), nullable=False),
    # set by every guarded transition (`SET previous_status = status, status = :to`)
    # so the history row can name where the run came from without a second read
    Column("previous_status", String(20)),
    Column("payload", JSON),
    Column("payload_type", String(64), nullable=False),
    Column("output", JSON),
    Column("error", JSON),
    Column("tags", JSON, nullable=False),
    Column("run_metadata", JSON),
    Column("idempotency_key", String(128)),
    Column("idempotency_key_raw", String(512)),
    Column("idempotency_key_expires_at", Float),
    Column("machine", String(16), nullable=False),
    Column("max_attempts", Integer),  # None: the task's retry policy decides
    Column("max_duration", Float),  # None: the task's max_duration
    Column("priority", Float, nullable=False, server_default=text("0")),
    Column("ttl", String(32)),
    # attempts started so far (ctx.attempt.number of the latest one)
    Column("attempt_count", Integer, nullable=False, server_default=text("0")),
    # attempts that failed and used up retry budget (released attempts do not)
    Column("failure_count", Integer, nullable=False, server_default=text("0")),
    Column("current_attempt_id", String(40)),
    Column("worker_id", String(40)),
    Column("locked_version", String(64)),
    Column("available_at", Float, nullable=False),
    Column("order_key", Float, nullable=False),
    Column("lease_expires_at", Float),
    Column("expires_at", Float),  # TTL deadline for starting
    Column("parent_run_id", String(40)),
    Column("root_run_id", String(40)),
    Column("batch_id", String(40)),
    Column("batch_index", Integer),
    # debounced runs wait DELAYED under this key until the burst goes quiet
    Column("debounce_key", String(512)),
    Column("debounce_until", Float),  # the latest start a burst may push it to
    Column("replay_of", String(40)),  # the run this one replays
    Column("schedule_id", String(40)),  # the schedule that created it
    Column("depth", Integer, nullable=False, server_default=text("0")),
    Column("trigger_function", String(24), nullable=False),
    Column("is_test", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("delayed_until", DateTime),
    Column("expired_at", DateTime),
    # the W3C traceparent the caller sent with the trigger (None: a trace of its own)
    Column("trace_context", String(64)),
    # the request key of the trigger that made it (x-trigger-request-idempotency-key):
    # a retry of that call, on any server, answers this run instead of making another
    Column("request_key", String(128)),
    # the claim path: only queued runs, in dequeue order
    Index(
        "ix_runs_queued",
        "environment_id",
        "order_key",
        postgresql_where=text("status = 'QUEUED'"),
        sqlite_where=text("status = 'QUEUED'"),
    ),
    Index(
        "ix_runs_delayed",
        "available_at",
        postgresql_where=text("status = 'DELAYED'"),
        sqlite_where=text("status = 'DELAYED'"),
    ),
    Index(
        "ix_runs_expiry",
        "expires_at",
        postgresql_where=text("expires_at IS NOT NULL AND status IN ('QUEUED', 'DELAYED')"),
        sqlite_where=text("expires_at IS NOT NULL AND status IN ('QUEUED', 'DELAYED')"),
    ),
    # concurrency accounting and the heartbeat reaper: only claimed/executing runs
    Index(
        "ix_runs_active",
        "environment_id",
        "queue_name",
        "concurrency_key",
        postgresql_where=text("status IN ('DEQUEUED', 'EXECUTING')"),
        sqlite_where=text("status IN ('DEQUEUED', 'EXECUTING')"),
    ),
    Index(
        "ix_runs_lease",
        "lease_expires_at",
        postgresql_where=text("status IN ('DEQUEUED', 'EXECUTING')"),
        sqlite_where=text("status IN ('DEQUEUED', 'EXECUTING')"),
    ),
    # the fair-queuing service clock: the latest order key holding a slot
    Index(
        "ix_runs_active_order",
        "environment_id",
        "order_key",
        postgresql_where=text("status IN ('DEQUEUED', 'EXECUTING')"),
        sqlite_where=text("status IN ('DEQUEUED', 'EXECUTING')"),
    ),
    Index(
        "ix_runs_debounce",
        "environment_id",
        "task_identifier",
        "debounce_key",
        unique=True,
        postgresql_where=text("debounce_key IS NOT NULL AND status = 'DELAYED'"),
        sqlite_where=text("debounce_key IS NOT NULL AND status = 'DELAYED'"),
    ),
    Index(
        "ix_runs_batch",
        "batch_id",
        "batch_index",
        unique=True,
        postgresql_where=text("batch_id IS NOT NULL"),
        sqlite_where=text("batch_id IS NOT NULL"),
    ),
    Index(
        "ix_runs_schedule",
        "environment_id",
        "schedule_id",
        "id",
        postgresql_where=text("schedule_id IS NOT NULL"),
        sqlite_where=text("schedule_id IS NOT NULL"),
    ),
    # a run's children, for its trace
    Index(
        "ix_runs_parent",
        "parent_run_id",
        postgresql_where=text("parent_run_id IS NOT NULL"),
        sqlite_where=text("parent_run_id IS NOT NULL"),
    ),
    # runs.list newest first; ids sort by creation time
    Index("ix_runs_env_id", "environment_id", "id"),
    Index("ix_runs_env_task_id", "environment_id", "task_identifier", "id"),
    Index("ix_runs_env_status_id", "environment_id", "status", "id"),
    # retention: an environment's runs finished before a cutoff (store/retention.py)
    Index("ix_runs_retention", "environment_id", "finished_at"),
    Index(
        "ix_runs_request_key",
        "environment_id",
        "request_key",
        unique=True,
        postgresql_where=text("request_key IS NOT NULL"),
        sqlite_where=text("request_key IS NOT NULL"),
    ),
    Index(
        "ix_runs_idempotency",
        "environment_id",
        "task_identifier",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
        sqlite_where=text("idempotency_key IS NOT NULL"),
    ),
)

# Tags in their own table so "runs with any of these tags" is an index lookup on
# both dialects.
run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(40), ForeignKey("runs.id"), primary_key=True),
    Column("tag", String(128), primary_key=True),
    Column("environment_id", String(40), nullable=False),
    Index("ix_run_tags_env_tag", "environment_id", "tag", "run_id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("run_id", String(40), ForeignKey("runs.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("worker_id", String(40)),
    Column("version", String(64)),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("error", JSON),
    Index("ix_attempts_run", "run_id", "number"),
)

# One row per status change, written in the same transaction as the change.
run_events = Table(
    "run_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(40), nullable=False),
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("attempt_id", String(40)),
    Column("reason", Text),
    Column("at", DateTime, nullable=False),
    Index("ix_run_events_run", "run_id", "id"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(40), nullable=False),
    Column("attempt_number", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("level", String(8), nullable=False),
    Column("stream", String(8), nullable=False),
    Column("message", Text, nullable=False),
    Column("fields", JSON),
    Index("ix_run_logs_run", "run_id", "id"),
)

# Cron schedules. ``next_fire_at`` is the next slot (epoch seconds), NULL while
# the schedule is inactive; the scheduler sweep claims a slot by moving it with
# a guarded UPDATE (``WHERE next_fire_at = :slot``), so one replica wins.
schedules = Table(
    "schedules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), ForeignKey("environments.id"), nullable=False),
    Column("task_identifier", String(128), nullable=False),
    Column("type", String(16), nullable=False),  # DECLARATIVE | IMPERATIVE
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("external_id", String(512)),
    Column("deduplication_key", String(512)),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("next_fire_at", Float),
    # the slot time of the last run this schedule created (payload lastTimestamp)
    Column("last_fired_at", Float),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index(
        "ix_schedules_due",
        "next_fire_at",
        postgresql_where=text("next_fire_at IS NOT NULL"),
        sqlite_where=text("next_fire_at IS NOT NULL"),
    ),
    Index("ix_schedules_env_id", "environment_id", "id"),
    Index(
        "ix_schedules_dedup",
        "environment_id",
        "deduplication_key",
        unique=True,
        postgresql_where=text("deduplication_key IS NOT NULL"),
        sqlite_where=text("deduplication_key IS NOT NULL"),
    ),
    # one declarative schedule per task
    Index(
        "ix_schedules_declarative",
        "environment_id",
        "task_identifier",
        unique=True,
        postgresql_where=text("type = 'DECLARATIVE'"),
        sqlite_where=text("type = 'DECLARATIVE'"),
    ),
)

# -- durable execution ------------------------------------------------------------

# One row per durable call of a run (step.run, waits, child runs), in call order.
# Replay returns ``result`` (or raises ``error``) instead of doing the call again.
run_journal = Table(
    "run_journal",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("kind", String(24), nullable=False),
    Column("name", String(256), nullable=False),
    # OK | ERROR | RETRYING (a step with failed tries left) | PENDING (a wait)
    Column("status", String(12), nullable=False),
    Column("result", JSON),
    Column("error", JSON),
    # results above the inline limit live in run_journal_blobs
    Column("result_blob", Boolean, nullable=False, server_default=text("false")),
    # failed tries of a step so far (survives crashes)
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    # a step's display fields for the trace: {"name", "icon", "properties"}
    Column("display", JSON),
    # a step's failed tries, kept after it succeeds: [{"number", "at", "error"}]
    Column("tries", JSON),
)

run_journal_blobs = Table(
    "run_journal_blobs",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", Text, nullable=False),
)

# Something runs can wait on: a duration, a token, a child run, an event.
waitpoints = Table(
    "waitpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), nullable=False),
    Column("kind", String(16), nullable=False),  # DURATION | TOKEN | RUN | EVENT
    Column("status", String(12), nullable=False),  # PENDING | COMPLETED | TIMED_OUT
    # DURATION: when it resolves; others: when it times out (None: never)
    Column("due_at", Float),
    Column("output", JSON),
    Column("output_is_error", Boolean, nullable=False, server_default=text("false")),
    Column("idempotency_key", String(512)),
    Column("idempotency_key_expires_at", Float),
    Column("tags", JSON, nullable=False),
    # the secret part of a token's callback URL
    Column("callback_secret", String(64)),
    Column("child_run_id", String(40)),
    Column("event_name", String(256)),
    Column("event_filter", JSON),
    Column("owner_run_id", String(40)),
    Column("created_at", DateTime, nullable=False),
    Column("completed_at", DateTime),
    # EVENT: only the event sent with this id completes the wait (correlation)
    Column("event_id", String(128)),
    # TOKEN, EVENT: the JSON Schema what completes the wait must satisfy
    Column("schema", JSON),
    Index(
        "ix_waitpoints_due",
        "due_at",
        postgresql_where=text("status = 'PENDING' AND due_at IS NOT NULL"),
        sqlite_where=text("status = 'PENDING' AND due_at IS NOT NULL"),
    ),
    Index(
        "ix_waitpoints_child",
        "child_run_id",
        postgresql_where=text("child_run_id IS NOT NULL"),
        sqlite_where=text("child_run_id IS NOT NULL"),
    ),
    Index(
        "ix_waitpoints_event",
        "environment_id",
        "event_name",
        postgresql_where=text("status = 'PENDING' AND kind = 'EVENT'"),
        sqlite_where=text("status = 'PENDING' AND kind = 'EVENT'"),
    ),
    Index(
        "ix_waitpoints_idempotency",
        "environment_id",
        "idempotency_key",
        unique=True,
        postgresql_where=text("idempotency_key IS NOT NULL"),
        sqlite_where=text("idempotency_key IS NOT NULL"),
    ),
    Index("ix_waitpoints_env_id", "environment_id", "id"),
)

# Which run waits on which waitpoint, for which journal entry; a batch wait has
# several rows for one (run_id, seq), ordered by ``idx``.
waitpoint_waiters = Table(
    "waitpoint_waiters",
    metadata,
    Column("waitpoint_id", String(40), primary_key=True),
    Column("run_id", String(40), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("idx", Integer, nullable=False, server_default=text("0")),
    Index("ix_waitpoint_waiters_run", "run_id", "seq"),
)

# Sent events: a repeated send of a name and id starts nothing twice.
events = Table(
    "events",
    metadata,
    Column("environment_id", String(40), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("payload", JSON),
    Column("run_ids", JSON, nullable=False),
    Column("errors", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_events_env_name", "environment_id", "name", "created_at"),
    # retention: an environment's events sent before a cutoff
    Index("ix_events_retention", "environment_id", "created_at"),
)

# A small durable key-value store per environment.
kv_entries = Table(
    "kv_entries",
    metadata,
    Column("environment_id", String(40), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("value", JSON),
    Column("expires_at", Float),
    Column("updated_at", DateTime, nullable=False),
    # the maintenance loop's purge of expired entries
    Index("ix_kv_entries_expires_at", "expires_at"),
)

# -- webhooks ---------------------------------------------------------------------

# An incoming-webhook URL (``/webhooks/{id}``): the source's verifier and its
# secret, sealed under the server keyring (never stored in clear).
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), ForeignKey("environments.id"), nullable=False),
    Column("source", String(64), nullable=False),
    # the event name when the source names none (generic sources)
    Column("event_name", String(256)),
    Column("options", JSON, nullable=False),
    Column("secret_sealed", Text, nullable=False),
    Column("description", String(500)),
    # deliveries refused for a bad signature (counted; nothing else kept of them)
    Column("rejected_count", Integer, nullable=False, server_default=text("0")),
    Column("last_rejected_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Index("ix_webhook_endpoints_env", "environment_id", "created_at"),
)

# One row per verified delivery: what came (headers less secrets, body), the
# event it became and the runs it started; a redelivery is recorded as such.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("endpoint_id", String(40), nullable=False),
    Column("environment_id", String(40), nullable=False),
    Column("event_id", String(128), nullable=False),
    Column("event_name", String(256), nullable=False),
    Column("headers", JSON, nullable=False),
    Column("payload", JSON),
    Column("run_ids", JSON, nullable=False),
    Column("errors", JSON, nullable=False),
    # first | redelivery | rejected-payload
    Column("outcome", String(20), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
    Index("ix_webhook_deliveries_created", "created_at"),
    # the retention sweep, per environment
    Index("ix_webhook_deliveries_env_created", "environment_id", "created_at"),
)

# People who sign in to the dashboard (one role: everything in every environment).
dashboard_users = Table(
    "dashboard_users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("username", String(128), nullable=False, unique=True),
    # argon2id, in the library's encoded form (parameters and salt included)
    Column("password_hash", String(256), nullable=False),
    Column("created_at", DateTime, nullable=False),
    # a password change moves it: sessions signed before then stop working
    Column("sessions_valid_after", Float, nullable=False),
)

# The change feed (``engine/changes.py``): one row per change a subscriber can
# see (run created, status, metadata, tags, log line, stream chunk, waitpoint),
# written in the transaction that makes the change. Most rows come from the
# database triggers of migration 0008 (``store/changes.py`` names them), so
# every path that changes a run (the one-statement fast paths included) writes
# its change without a statement of its own. ``id`` is the feed's position:
# monotonic (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), the
# ``Last-Event-ID`` of the realtime routes.
changes = Table(
    "changes",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("environment_id", String(40), nullable=False),
    Column("run_id", String(40)),
    Column("batch_id", String(40)),
    Column("kind", String(16), nullable=False),
    Column("data", JSON),
    # epoch seconds, the database's clock
    Column("created_at", Float, nullable=False),
    Index("ix_changes_env_id", "environment_id", "id"),
    Index("ix_changes_run_id", "run_id", "id"),
    Index(
        "ix_changes_batch_id",
        "batch_id",
        "id",
        postgresql_where=text("batch_id IS NOT NULL"),
        sqlite_where=text("batch_id IS NOT NULL"),
    ),
    sqlite_autoincrement=True,
)

# Streams a task pipes (``streams.pipe("llm", chunks)``): every chunk kept with
# its run, numbered by the task from 0 per (run, key), so a resent chunk is
# stored once; each new chunk is also a ``stream`` change of the change feed.
run_stream_chunks = Table(
    "run_stream_chunks",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("environment_id", String(40), nullable=False),
    Column("data", JSON),
    Column("created_at", Float, nullable=False),
)

# One-time public tokens (``auth.create_trigger_token``) already used: a token's
# id is stored when it is spent, and refused after; kept until the token expires.
public_token_uses = Table(
    "public_token_uses",
    metadata,
    Column("token_id", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
)

# Environment variables delivered to the task processes of an environment. The
# value is sealed by the server keyring (``engine/keyring.py``): the store never
# holds it in plaintext.
env_vars = Table(
    "env_vars",
    metadata,
    Column("environment_id", String(40), ForeignKey("environments.id"), primary_key=True),
    Column("name", String(256), primary_key=True),
    Column("value_box", Text, nullable=False),
    # shown as "<redacted>" by the API's list and retrieve
    Column("is_secret", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# -- traces -------------------------------------------------------------------------

# Spans only the task process knows of (spans task code opens with the
# OpenTelemetry API, integration calls). The run's other spans (attempts,
# steps, waits, child runs, batches) are derived from the records above when a
# trace is read, so the hot paths write nothing more; ``engine/traces.py``
# merges both. Rows hang off their run and go with it (retention).
run_spans = Table(
    "run_spans",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("span_id", String(16), primary_key=True),
    Column("trace_id", String(32), nullable=False),
    Column("parent_span_id", String(16)),
    Column("name", String(256), nullable=False),
    # "user" (task code) | "integration"
    Column("kind", String(16), nullable=False),
    Column("attempt_number", Integer),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float),
    Column("status", String(8), nullable=False),  # UNSET | OK | ERROR
    Column("attributes", JSON, nullable=False),
    Column("events", JSON, nullable=False),
    Index("ix_run_spans_run_start", "run_id", "start_time"),
)


# Where a walk of the history that every server runs but only one may act on
# stands, shared by the servers: each takes the next rows by moving the position
# with a compare-and-set (the run counters of /metrics, engine/metrics.py). The
# export of finished runs' spans (engine/traces.py) leases the rows after the
# position instead, and moves it once the collector took them: a lease that
# expires (its server stopped) lets another server send them.
history_cursors = Table(
    "history_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    #: who is sending the rows after ``position`` (one pass's token), until when
    #: (clock seconds); both NULL while nobody is
    Column("lease_holder", String(64)),
    Column("lease_expires_at", Float),
)


# -- alerts ---------------------------------------------------------------------------

# What to watch in an environment and whom to tell (engine/alerts.py).
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    # RUN_FAILED | FAILURE_RATE | QUEUE_AGE | NO_WORKER | WORKER_LOST
    Column("kind", String(16), nullable=False),
    # tasks (a list; empty: all), threshold, window (s), queue, max_age (s)
    Column("config", JSON, nullable=False),
    Column("channel", String(8), nullable=False),  # WEBHOOK | SLACK | EMAIL
    Column("target", String(512), nullable=False),  # a URL or an email address
    # a webhook's signing secret, sealed by the keyring
    Column("secret_sealed", Text),
    # one alert per rule per window (seconds); later ones add to its count
    Column("throttle", Float, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Index("ix_alert_rules_env", "environment_id", "id"),
)

# Alerts to send and how sending went: retried with backoff until sent or given up.
alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("environment_id", String(40), nullable=False),
    Column("rule_id", String(40), nullable=False),
    # the rule and its throttle window: one delivery per key
    Column("dedup_key", String(128), nullable=False, unique=True),
    Column("status", String(8), nullable=False),  # PENDING | SENT | FAILED
    Column("payload", JSON, nullable=False),
    Column("count", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float),
    Column("last_error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
    Index(
        "ix_alert_deliveries_due",
        "next_attempt_at",
        postgresql_where=text("status = 'PENDING'"),
        sqlite_where=text("status = 'PENDING'"),
    ),
    Index("ix_alert_deliveries_env", "environment_id", "id"),
    # the retention sweep, per environment
    Index("ix_alert_deliveries_env_created", "environment_id", "created_at"),
)
