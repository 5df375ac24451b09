"""Queries on a run's journal: the recorded results of its durable calls."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import operator
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import GuardedRun, JournalRecord
from triggerfish._domain.states import SETTLED_JOURNAL, JournalStatus, RunStatus
from triggerfish.store.db import Database, stored_row
from triggerfish.store.tables import attempts, run_journal, run_journal_blobs, runs

#: journal columns a replaying task process needs
_WIRE = (
    run_journal.c.run_id,
    run_journal.c.seq,
    run_journal.c.kind,
    run_journal.c.name,
    run_journal.c.status,
    run_journal.c.result,
    run_journal.c.error,
    run_journal.c.result_blob,
    run_journal.c.failures,
    run_journal.c.tries,
)


async def guard_executing(
    conn: AsyncConnection, run_id: str, attempt_id: str, now: datetime, *, lock_version: bool
) -> GuardedRun | None:
    """Lock the run if ``attempt_id`` is its current, executing attempt; else ``None``.

    The update is the guard (and the row lock on PostgreSQL): a journal write
    from a reclaimed or canceled attempt matches no row. With ``lock_version``
    it also locks the run to the attempt's worker version: from its first
    journal entry on, a run only replays on code of that version.
    """
    params = {"run_id": run_id, "attempt_id": attempt_id, "now": now}
    row = (await conn.execute(_guard(lock_version), params)).first()
    return None if row is None else GuardedRun(*row)


@functools.lru_cache(maxsize=2)
def _guard(lock_version: bool) -> Any:
    values: dict[str, Any] = {"updated_at": bindparam("now")}
    if lock_version:
        version = select(attempts.c.version).where(attempts.c.id == bindparam("attempt_id"))
        values["locked_version"] = func.coalesce(runs.c.locked_version, version.scalar_subquery())
    return (
        update(runs)
        .where(
            runs.c.id == bindparam("run_id"),
            runs.c.current_attempt_id == bindparam("attempt_id"),
            runs.c.status == RunStatus.EXECUTING.value,
        )
        .values(**values)
        .returning(runs.c.id, runs.c.environment_id, runs.c.task_identifier)
    )


@contextlib.asynccontextmanager
async def single_statement(db: Database) -> AsyncIterator[AsyncConnection]:
    """A PostgreSQL connection for one self-contained statement, without BEGIN/COMMIT.

    A single statement is atomic on its own; the explicit transaction would
    only add two round trips to every journal write and journal read.
    """
    async with db.engine.connect() as conn:
        yield await conn.execution_options(isolation_level="AUTOCOMMIT")


async def guarded_upsert(
    conn: AsyncConnection,
    entry: JournalRecord,
    *,
    attempt_id: str,
    env_id: str | None,
    now: datetime,
    lock_version: bool,
) -> bool:
    """PostgreSQL: :func:`guard_executing` and :func:`upsert` as one statement.

    The guard's ``UPDATE`` is a data-modifying CTE the insert selects from, so
    the entry is written only if the attempt is the run's current, executing
    one (in ``env_id`` when given), under the run's row lock, in one round
    trip. ``False``: the attempt is stale and nothing was written.
    """
    values = _entry_values(entry)
    keys = tuple(sorted(values))
    params = {**values, "g_attempt": attempt_id, "g_env": env_id, "g_now": now}
    return (await conn.execute(_guarded_upsert(keys, lock_version), params)).first() is not None


async def guarded_upsert_alone(
    db: Database,
    entry: JournalRecord,
    *,
    attempt_id: str,
    env_id: str | None,
    now: datetime,
    lock_version: bool,
) -> bool:
    """:func:`guarded_upsert` as a transaction of its own (a step's journal write).

    Every durable step of every run comes through here, so the statement goes
    straight to the driver on a held connection (``Database.fetch_alone``),
    prepared once per connection: SQLAlchemy's per-execution work costs more
    than PostgreSQL's.
    """
    values = _entry_values(entry)
    keys = tuple(sorted(values))
    row = stored_row(run_journal, db.engine.dialect, keys, values)
    sql = _guarded_upsert_on_driver(keys, lock_version)
    return bool(await db.fetch_alone(sql, [*row, attempt_id, env_id, now]))


@functools.lru_cache(maxsize=16)
def _guarded_upsert(keys: tuple[str, ...], lock_version: bool) -> Any:
    # typed text like _upsert: SQLAlchemy can neither cache ON CONFLICT nor
    # compose a data-modifying CTE into an INSERT … SELECT
    names = {k: f":{k}" for k in keys}
    names.update(g_attempt=":g_attempt", g_env="CAST(:g_env AS VARCHAR)", g_now=":g_now")
    binds = [bindparam(k, type_=run_journal.c[k].type) for k in keys]
    binds += [
        bindparam("g_attempt", type_=runs.c.current_attempt_id.type),
        bindparam("g_env", type_=runs.c.environment_id.type),
        bindparam("g_now", type_=runs.c.updated_at.type),
    ]
    return text(_guarded_upsert_sql(keys, lock_version, names)).bindparams(*binds)


@functools.lru_cache(maxsize=16)
def _guarded_upsert_on_driver(keys: tuple[str, ...], lock_version: bool) -> str:
    # every parameter is cast: in INSERT … SELECT PostgreSQL would read an
    # untyped one as text
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    names = {
        k: f"${i}::{run_journal.c[k].type.compile(dialect=pg)}" for i, k in enumerate(keys, start=1)
    }
    n = len(keys)
    names.update(g_attempt=f"${n + 1}::varchar", g_env=f"${n + 2}::varchar")
    names.update(g_now=f"${n + 3}::timestamp")
    return _guarded_upsert_sql(keys, lock_version, names)


def _guarded_upsert_sql(keys: tuple[str, ...], lock_version: bool, names: dict[str, str]) -> str:
    """The guarded upsert with each value written as ``names`` says (the entry's
    columns, ``g_attempt``, ``g_env`` and ``g_now``)."""
    attempt, env = names["g_attempt"], names["g_env"]
    version = (
        ", locked_version = coalesce(runs.locked_version,"
        f" (SELECT attempts.version FROM attempts WHERE attempts.id = {attempt}))"
        if lock_version
        else ""
    )
    guard = (
        f"UPDATE runs SET updated_at = {names['g_now']}{version} "
        f"WHERE runs.id = {names['run_id']} AND runs.current_attempt_id = {attempt} "
        f"AND runs.status = '{RunStatus.EXECUTING.value}' "
        f"AND ({env} IS NULL OR runs.environment_id = {env}) "
        "RETURNING runs.id"
    )
    # the guard's row, not the insert's: a write the conflict clause skips (an
    # entry already settled) was still made by the current attempt
    return (
        f"WITH guard AS ({guard}), entry AS ("
        f"INSERT INTO run_journal ({', '.join(keys)}) "
        f"SELECT {', '.join(names[k] for k in keys)} FROM guard "
        f"{_on_conflict(keys)} RETURNING run_journal.run_id) "
        "SELECT id FROM guard"
    )


async def entries_of(
    conn: AsyncConnection, run_ids: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """The journals of these runs, in call order (large results left out of line)."""
    out: dict[str, list[dict[str, Any]]] = {rid: [] for rid in run_ids}
    if not run_ids:
        return out
    for row in (await conn.execute(_ENTRIES_OF, {"ids": list(run_ids)})).all():
        entry = dict(row._mapping)
        out[entry.pop("run_id")].append(entry)
    return out


_ENTRIES_OF = (
    select(*_WIRE)
    .where(run_journal.c.run_id.in_(bindparam("ids", expanding=True)))
    .order_by(run_journal.c.run_id, run_journal.c.seq)
)


def entry_from_row(row: Row[Any]) -> JournalRecord:
    """The record of a row holding every column of ``run_journal``, in order."""
    return JournalRecord(*row)


async def entry(conn: AsyncConnection, run_id: str, seq: int) -> JournalRecord | None:
    stmt = select(run_journal).where(run_journal.c.run_id == run_id, run_journal.c.seq == seq)
    row = (await conn.execute(stmt)).first()
    return None if row is None else entry_from_row(row)


async def upsert(conn: AsyncConnection, entry: JournalRecord) -> None:
    """Insert the entry ``(run_id, seq)`` or overwrite its outcome."""
    values = _entry_values(entry)
    await conn.execute(_upsert(tuple(sorted(values))), values)


#: every column of a journal entry, in ``JournalRecord``'s order
_ENTRY_COLUMNS = tuple(f.name for f in dataclasses.fields(JournalRecord))
# read once per durable call: an attribute getter, not reflection over the dataclass
_entry_fields = operator.attrgetter(*_ENTRY_COLUMNS)


def _entry_values(entry: JournalRecord) -> dict[str, Any]:
    """``entry``'s columns, without ``display`` and ``tries`` when None: only steps
    that have them carry them, so a plain step's write stays the same statement
    (and they stay SQL NULL, not JSON null)."""
    values = dict(zip(_ENTRY_COLUMNS, _entry_fields(entry), strict=True))
    if entry.display is None:
        del values["display"]
    if entry.tries is None:
        del values["tries"]
    return values


@functools.lru_cache(maxsize=16)
def _upsert(keys: tuple[str, ...]) -> Any:
    # typed text, the same on both stores: SQLAlchemy recompiles its ON CONFLICT
    # constructs on every execution, and every durable step runs this
    return text(
        f"INSERT INTO run_journal ({', '.join(keys)}) "
        f"VALUES ({', '.join(':' + k for k in keys)}) {_on_conflict(keys)}"
    ).bindparams(*(bindparam(k, type_=run_journal.c[k].type) for k in keys))


def _on_conflict(keys: tuple[str, ...]) -> str:
    """A rewritten entry takes the new outcome (a step's retry, a wait's result),
    unless its outcome is settled: a write that arrives late (sent to a server
    that hung, then relayed through another) never turns an OK step back into a
    retrying one that a replay would run again."""
    mutable = (
        "kind",
        "name",
        "status",
        "result",
        "error",
        "result_blob",
        "failures",
        "display",
        "tries",
    )
    updates = [k for k in mutable if k in keys] + ["finished_at"]
    settled = ", ".join(f"'{s.value}'" for s in sorted(SETTLED_JOURNAL))
    return (
        "ON CONFLICT (run_id, seq) DO UPDATE SET "
        + ", ".join(f"{k} = excluded.{k}" for k in updates)
        + f" WHERE run_journal.status NOT IN ({settled})"
    )


async def set_outcome(
    conn: AsyncConnection,
    run_id: str,
    seq: int,
    *,
    status: JournalStatus,
    result: Any,
    now: datetime,
) -> None:
    """Fill a pending entry (a wait) with what it resolved to."""
    params = {"run": run_id, "at": seq, "to": status.value, "out": result, "now": now}
    await conn.execute(_SET_OUTCOME, params)


_SET_OUTCOME = (
    update(run_journal)
    .where(run_journal.c.run_id == bindparam("run"), run_journal.c.seq == bindparam("at"))
    .values(status=bindparam("to"), result=bindparam("out"), finished_at=bindparam("now"))
)


async def put_blob(conn: AsyncConnection, run_id: str, seq: int, data: str) -> None:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(run_journal_blobs).values(run_id=run_id, seq=seq, data=data)
    stmt = stmt.on_conflict_do_update(
        index_elements=[run_journal_blobs.c.run_id, run_journal_blobs.c.seq],
        set_={"data": stmt.excluded.data},
    )
    await conn.execute(stmt)


async def get_blob(conn: AsyncConnection, run_id: str, seq: int) -> str | None:
    stmt = select(run_journal_blobs.c.data).where(
        run_journal_blobs.c.run_id == run_id, run_journal_blobs.c.seq == seq
    )
    value = (await conn.execute(stmt)).scalar()
    return str(value) if value is not None else None


async def copy_prefix(
    conn: AsyncConnection,
    source_run: str,
    target_run: str,
    below_seq: int,
    now: datetime,
    *,
    results: dict[int, Any] | None = None,
) -> int:
    """Copy the finished entries of ``source_run`` with ``seq < below_seq`` to
    ``target_run``; ``results`` replaces the result of the entries it names."""
    rows = (
        await conn.execute(
            select(run_journal).where(
                run_journal.c.run_id == source_run,
                run_journal.c.seq < below_seq,
                run_journal.c.status.in_([s.value for s in SETTLED_JOURNAL]),
            )
        )
    ).all()
    for row in rows:
        copied = dataclasses.replace(
            entry_from_row(row), run_id=target_run, started_at=now, finished_at=now
        )
        if results and row.seq in results:
            result = results[row.seq]
            await upsert(conn, dataclasses.replace(copied, result=result, result_blob=False))
            continue
        await upsert(conn, copied)
        if row.result_blob:
            data = await get_blob(conn, source_run, row.seq)
            if data is not None:
                await put_blob(conn, target_run, row.seq, data)
    return len(rows)


async def count(conn: AsyncConnection, run_id: str) -> int:
    stmt = select(func.count()).select_from(run_journal).where(run_journal.c.run_id == run_id)
    return int((await conn.execute(stmt)).scalar() or 0)


async def list_entries(conn: AsyncConnection, run_id: str) -> list[JournalRecord]:
    return [entry_from_row(r) for r in (await conn.execute(_ENTRIES, {"run": run_id})).all()]


_ENTRIES = (
    select(run_journal).where(run_journal.c.run_id == bindparam("run")).order_by(run_journal.c.seq)
)


async def drop_from(conn: AsyncConnection, run_id: str, seq: int) -> None:
    await conn.execute(
        delete(run_journal).where(run_journal.c.run_id == run_id, run_journal.c.seq >= seq)
    )
