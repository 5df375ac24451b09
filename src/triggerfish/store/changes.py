"""The change feed's rows: the triggers that write them, and the reads.

Every change a subscriber can see is a row of ``changes`` written in the
transaction that makes it. The database writes most of them itself, with the
triggers below (installed by migration 0008): whichever statement changes a
run (the general transition, the batched claim and reports, the
one-statement PostgreSQL paths, a metadata update, a cancel, TTL expiry, a
waitpoint's resolution), its change is in the same transaction with no
statement or round trip of its own. Stream chunks are written by
:func:`append_chunks`.

Kinds and their ``data``:

- ``created``: ``{"status", "task", "tags"}``, a new run
- ``status``: ``{"status", "from"}``
- ``metadata``: ``{"metadata"}``, the run's whole metadata after the change
- ``tags``: ``{"tags"}``, the run's tags after the change
- ``log``: ``{"id", "attempt", "ts", "level", "stream", "message", "fields"}``
- ``waitpoint``: ``{"waitpoint", "kind", "status"}``: the run waits on it
  (``PENDING``) or it resolved (``COMPLETED`` / ``TIMED_OUT``); a resolved
  waitpoint nobody waits on has no run
- ``stream``: ``{"key", "seq", "chunk"}``, one chunk of a run's stream
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import ChangeRecord
from triggerfish.store.db import Database
from triggerfish.store.horizon import Horizon
from triggerfish.store.tables import changes, run_tags

KINDS = ("created", "status", "metadata", "tags", "log", "waitpoint", "stream")

# --- the triggers (migration 0008 installs them; tests/store checks each kind) ---

_PG_NOW = "extract(epoch from clock_timestamp())::double precision"
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_COLS = "environment_id, run_id, batch_id, kind, data, created_at"

#: (name, table, PostgreSQL timing clause, PostgreSQL body, SQLite timing clause, SQLite body)
_TRIGGERS: tuple[tuple[str, str, str, str, str, str], ...] = (
    (
        "changes_run_created",
        "runs",
        "AFTER INSERT ON runs FOR EACH ROW",
        f"""INSERT INTO changes ({_COLS}) VALUES (NEW.environment_id, NEW.id, NEW.batch_id,
            'created', json_build_object('status', NEW.status,
            'task', NEW.task_identifier, 'tags', NEW.tags), {_PG_NOW});""",
        "AFTER INSERT ON runs FOR EACH ROW",
        f"""INSERT INTO changes ({_COLS}) VALUES (NEW.environment_id, NEW.id, NEW.batch_id,
            'created', json_object('status', NEW.status, 'task', NEW.task_identifier,
            'tags', json(NEW.tags)), {_SQLITE_NOW});""",
    ),
    (
        "changes_run_status",
        "runs",
        "AFTER UPDATE OF status ON runs FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)",
        f"""INSERT INTO changes ({_COLS}) VALUES (NEW.environment_id, NEW.id, NEW.batch_id,
            'status', json_build_object('status', NEW.status, 'from', OLD.status),
            {_PG_NOW});""",
        "AFTER UPDATE OF status ON runs FOR EACH ROW WHEN OLD.status IS NOT NEW.status",
        f"""INSERT INTO changes ({_COLS}) VALUES (NEW.environment_id, NEW.id, NEW.batch_id,
            'status', json_object('status', NEW.status, 'from', OLD.status),
            {_SQLITE_NOW});""",
    ),
    (
        "changes_run_metadata",
        "runs",
        "AFTER UPDATE OF run_metadata ON runs FOR EACH ROW "
        "WHEN (OLD.run_metadata::text IS DISTINCT FROM NEW.run_metadata::text)",
        f"""INSERT INTO changes ({_COLS}) VALUES (NEW.environment_id, NEW.id, NEW.batch_id,
            'metadata', json_build_object('metadata', NEW.run_metadata), {_PG_NOW});""",
        "AFTER UPDATE OF run_metadata ON runs FOR EACH ROW "
        "WHEN OLD.run_metadata IS NOT NEW.run_metadata",
        f"""INSERT INTO changes ({_COLS}) VALUES (NEW.environment_id, NEW.id, NEW.batch_id,
            'metadata', json_object('metadata', json(NEW.run_metadata)), {_SQLITE_NOW});""",
    ),
    (
        "changes_run_tags",
        "runs",
        "AFTER UPDATE OF tags ON runs FOR EACH ROW "
        "WHEN (OLD.tags::text IS DISTINCT FROM NEW.tags::text)",
        f"""INSERT INTO changes ({_COLS}) VALUES (NEW.environment_id, NEW.id, NEW.batch_id,
            'tags', json_build_object('tags', NEW.tags), {_PG_NOW});""",
        "AFTER UPDATE OF tags ON runs FOR EACH ROW WHEN OLD.tags IS NOT NEW.tags",
        f"""INSERT INTO changes ({_COLS}) VALUES (NEW.environment_id, NEW.id, NEW.batch_id,
            'tags', json_object('tags', json(NEW.tags)), {_SQLITE_NOW});""",
    ),
    (
        "changes_run_log",
        "run_logs",
        "AFTER INSERT ON run_logs FOR EACH ROW",
        f"""INSERT INTO changes ({_COLS}) SELECT r.environment_id, NEW.run_id, r.batch_id,
            'log', json_build_object('id', NEW.id, 'attempt', NEW.attempt_number,
            'ts', NEW.ts, 'level', NEW.level, 'stream', NEW.stream,
            'message', NEW.message, 'fields', NEW.fields), {_PG_NOW}
            FROM runs r WHERE r.id = NEW.run_id;""",
        "AFTER INSERT ON run_logs FOR EACH ROW",
        f"""INSERT INTO changes ({_COLS}) SELECT r.environment_id, NEW.run_id, r.batch_id,
            'log', json_object('id', NEW.id, 'attempt', NEW.attempt_number,
            'ts', NEW.ts, 'level', NEW.level, 'stream', NEW.stream,
            'message', NEW.message, 'fields', json(NEW.fields)), {_SQLITE_NOW}
            FROM runs r WHERE r.id = NEW.run_id;""",
    ),
    (
        "changes_waitpoint_waiter",
        "waitpoint_waiters",
        "AFTER INSERT ON waitpoint_waiters FOR EACH ROW",
        f"""INSERT INTO changes ({_COLS}) SELECT w.environment_id, NEW.run_id,
            (SELECT r.batch_id FROM runs r WHERE r.id = NEW.run_id), 'waitpoint',
            json_build_object('waitpoint', w.id, 'kind', w.kind, 'status', w.status), {_PG_NOW}
            FROM waitpoints w WHERE w.id = NEW.waitpoint_id;""",
        "AFTER INSERT ON waitpoint_waiters FOR EACH ROW",
        f"""INSERT INTO changes ({_COLS}) SELECT w.environment_id, NEW.run_id,
            (SELECT r.batch_id FROM runs r WHERE r.id = NEW.run_id), 'waitpoint',
            json_object('waitpoint', w.id, 'kind', w.kind, 'status', w.status), {_SQLITE_NOW}
            FROM waitpoints w WHERE w.id = NEW.waitpoint_id;""",
    ),
    (
        "changes_waitpoint_status",
        "waitpoints",
        "AFTER UPDATE OF status ON waitpoints FOR EACH ROW "
        "WHEN (OLD.status IS DISTINCT FROM NEW.status)",
        f"""INSERT INTO changes ({_COLS}) SELECT NEW.environment_id, ww.run_id,
            (SELECT r.batch_id FROM runs r WHERE r.id = ww.run_id), 'waitpoint',
            json_build_object('waitpoint', NEW.id, 'kind', NEW.kind, 'status', NEW.status),
            {_PG_NOW} FROM waitpoint_waiters ww WHERE ww.waitpoint_id = NEW.id
            UNION ALL SELECT NEW.environment_id, NULL, NULL, 'waitpoint',
            json_build_object('waitpoint', NEW.id, 'kind', NEW.kind, 'status', NEW.status),
            {_PG_NOW} WHERE NOT EXISTS
            (SELECT 1 FROM waitpoint_waiters ww WHERE ww.waitpoint_id = NEW.id);""",
        "AFTER UPDATE OF status ON waitpoints FOR EACH ROW WHEN OLD.status IS NOT NEW.status",
        f"""INSERT INTO changes ({_COLS}) SELECT NEW.environment_id, ww.run_id,
            (SELECT r.batch_id FROM runs r WHERE r.id = ww.run_id), 'waitpoint',
            json_object('waitpoint', NEW.id, 'kind', NEW.kind, 'status', NEW.status),
            {_SQLITE_NOW} FROM waitpoint_waiters ww WHERE ww.waitpoint_id = NEW.id
            UNION ALL SELECT NEW.environment_id, NULL, NULL, 'waitpoint',
            json_object('waitpoint', NEW.id, 'kind', NEW.kind, 'status', NEW.status),
            {_SQLITE_NOW} WHERE NOT EXISTS
            (SELECT 1 FROM waitpoint_waiters ww WHERE ww.waitpoint_id = NEW.id);""",
    ),
)


#: PostgreSQL: the changes of runs are written once per statement, from its
#: transition tables: a claim or a batch insert of 500 runs is one trigger call
#: and one insert, not 500 (these replace the row triggers of the same names)
_PG_STATEMENT_TRIGGERS: dict[str, tuple[str, str]] = {
    "changes_run_created": (
        "AFTER INSERT ON runs REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT",
        f"""INSERT INTO changes ({_COLS}) SELECT n.environment_id, n.id, n.batch_id,
            'created', json_build_object('status', n.status, 'task', n.task_identifier,
            'tags', n.tags), {_PG_NOW} FROM new_rows n ORDER BY n.batch_index, n.id;""",
    ),
    "changes_run_status": (
        "AFTER UPDATE ON runs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
        "FOR EACH STATEMENT",
        f"""INSERT INTO changes ({_COLS}) SELECT n.environment_id, n.id, n.batch_id,
            k.kind, k.data, {_PG_NOW}
            FROM new_rows n JOIN old_rows o ON o.id = n.id
            CROSS JOIN LATERAL (VALUES
              (0, 'metadata', CASE WHEN o.run_metadata::text IS DISTINCT FROM
                 n.run_metadata::text THEN json_build_object('metadata', n.run_metadata) END),
              (1, 'tags', CASE WHEN o.tags::text IS DISTINCT FROM n.tags::text
                 THEN json_build_object('tags', n.tags) END),
              (2, 'status', CASE WHEN o.status IS DISTINCT FROM n.status
                 THEN json_build_object('status', n.status, 'from', o.status) END)
            ) AS k(ord, kind, data)
            WHERE k.data IS NOT NULL ORDER BY n.id, k.ord;""",
    ),
}
#: row triggers PostgreSQL does without (``changes_run_status`` covers them)
_PG_SKIPPED = frozenset({"changes_run_metadata", "changes_run_tags"})


def trigger_ddl(dialect: str) -> list[str]:
    """The statements that install the change triggers on ``dialect``."""
    out: list[str] = []
    for name, _table, pg_when, pg_body, sqlite_when, sqlite_body in _TRIGGERS:
        if dialect == "postgresql":
            if name in _PG_SKIPPED:
                continue
            pg_when, pg_body = _PG_STATEMENT_TRIGGERS.get(name, (pg_when, pg_body))
            out.append(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n    {pg_body}\n    RETURN NULL;\nEND $$"
            )
            out.append(f"CREATE TRIGGER {name} {pg_when} EXECUTE FUNCTION {name}()")
        else:
            out.append(f"CREATE TRIGGER {name} {sqlite_when} BEGIN\n    {sqlite_body}\nEND")
    return out


def drop_trigger_ddl(dialect: str) -> list[str]:
    out: list[str] = []
    for name, table, *_ in _TRIGGERS:
        if dialect == "postgresql":
            out.append(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            out.append(f"DROP FUNCTION IF EXISTS {name}()")
        else:
            out.append(f"DROP TRIGGER IF EXISTS {name}")
    return out


# --- reads and writes ---

_COLUMNS = (
    changes.c.id,
    changes.c.environment_id,
    changes.c.run_id,
    changes.c.batch_id,
    changes.c.kind,
    changes.c.data,
    changes.c.created_at,
)


def _query(
    env_id: str,
    after: int,
    upto: int,
    *,
    run_id: str | None,
    tags: Sequence[str] | None,
    batch_id: str | None,
    kinds: Sequence[str] | None,
    limit: int,
) -> Select[Any]:
    where = [changes.c.environment_id == env_id, changes.c.id > after, changes.c.id <= upto]
    if run_id is not None:
        where.append(changes.c.run_id == run_id)
    if batch_id is not None:
        where.append(changes.c.batch_id == batch_id)
    if tags:
        tagged = select(run_tags.c.run_id).where(
            and_(run_tags.c.environment_id == env_id, run_tags.c.tag.in_(list(tags)))
        )
        where.append(changes.c.run_id.in_(tagged))
    if kinds:
        where.append(changes.c.kind.in_(list(kinds)))
    return select(*_COLUMNS).where(*where).order_by(changes.c.id).limit(limit)


async def read(
    conn: AsyncConnection,
    env_id: str,
    after: int,
    upto: int,
    *,
    run_id: str | None = None,
    tags: Sequence[str] | None = None,
    batch_id: str | None = None,
    kinds: Sequence[str] | None = None,
    limit: int = 500,
) -> list[ChangeRecord]:
    """The changes of ``env_id`` with ``after < id <= upto`` matching every filter
    given, oldest first, at most ``limit``."""
    stmt = _query(
        env_id, after, upto, run_id=run_id, tags=tags, batch_id=batch_id, kinds=kinds, limit=limit
    )
    return [ChangeRecord(*r) for r in (await conn.execute(stmt)).all()]


async def read_all(conn: AsyncConnection, after: int, upto: int, limit: int) -> list[ChangeRecord]:
    """Every environment's changes with ``after < id <= upto``, oldest first, at
    most ``limit`` (on the primary key alone): the feed's shared reader."""
    stmt = (
        select(*_COLUMNS)
        .where(changes.c.id > after, changes.c.id <= upto)
        .order_by(changes.c.id)
        .limit(limit)
    )
    return [ChangeRecord(*r) for r in (await conn.execute(stmt)).all()]


def horizon(db: Database) -> Horizon:
    """The horizon of the change feed's ids (``store/horizon.py``)."""
    return Horizon(db, changes.c.id)


async def max_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.max(changes.c.id)))).scalar() or 0)


async def append(
    conn: AsyncConnection,
    env_id: str,
    run_id: str | None,
    batch_id: str | None,
    kind: str,
    datas: Sequence[dict[str, Any]],
    at: float,
) -> None:
    """Write changes that no trigger writes (stream chunks), in the caller's transaction."""
    if datas:
        rows = [
            {
                "environment_id": env_id,
                "run_id": run_id,
                "batch_id": batch_id,
                "kind": kind,
                "data": data,
                "created_at": at,
            }
            for data in datas
        ]
        await conn.execute(insert(changes), rows)


async def delete_before(conn: AsyncConnection, before: float, limit: int) -> int:
    """Delete those of the ``limit`` oldest changes created before ``before``; how many.

    Bounded: it looks at the first ``limit`` ids only (ids grow with time)."""
    head = select(changes.c.id, changes.c.created_at).order_by(changes.c.id).limit(limit)
    head_rows = head.subquery()
    oldest = select(head_rows.c.id).where(head_rows.c.created_at < before)
    result = await conn.execute(delete(changes).where(changes.c.id.in_(oldest)))
    return int(result.rowcount or 0)
