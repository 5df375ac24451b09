"""A run's streams: the chunks a task pipes, stored once each, and their changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store import changes as change_store
from triggerfish.store.tables import run_stream_chunks


async def append(
    conn: AsyncConnection,
    env_id: str,
    run_id: str,
    batch_id: str | None,
    key: str,
    first_seq: int,
    chunks: Sequence[Any],
    at: float,
) -> int:
    """Store ``chunks`` as numbers ``first_seq…``; those already stored (a resend)
    are left as they are. Each new one is a ``stream`` change, in this transaction.
    How many were new."""
    if not chunks:
        return 0
    rows = [
        {
            "run_id": run_id,
            "key": key,
            "seq": first_seq + i,
            "environment_id": env_id,
            "data": chunk,
            "created_at": at,
        }
        for i, chunk in enumerate(chunks)
    ]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(run_stream_chunks)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(run_stream_chunks.c.seq)
    )
    new = sorted(int(s) for s in (await conn.execute(stmt)).scalars())
    fresh = {r["seq"]: r["data"] for r in rows}
    datas = [{"key": key, "seq": seq, "chunk": fresh[seq]} for seq in new]
    await change_store.append(conn, env_id, run_id, batch_id, "stream", datas, at)
    return len(new)


async def read(
    conn: AsyncConnection, run_id: str, key: str, after: int, limit: int
) -> list[tuple[int, Any]]:
    """(seq, chunk) of the stream after ``after``, in order."""
    t = run_stream_chunks
    stmt = (
        select(t.c.seq, t.c.data)
        .where(t.c.run_id == run_id, t.c.key == key, t.c.seq > after)
        .order_by(t.c.seq)
        .limit(limit)
    )
    return [(int(seq), data) for seq, data in (await conn.execute(stmt)).all()]


async def last_seq(conn: AsyncConnection, run_id: str, key: str) -> int:
    """The number of the stream's last chunk stored; -1 when it has none."""
    t = run_stream_chunks
    stmt = select(func.max(t.c.seq)).where(t.c.run_id == run_id, t.c.key == key)
    found = (await conn.execute(stmt)).scalar()
    return -1 if found is None else int(found)


async def keys(conn: AsyncConnection, run_ids: Sequence[str]) -> dict[str, list[str]]:
    """run id → the keys of its streams that have a chunk, in name order."""
    if not run_ids:
        return {}
    t = run_stream_chunks
    stmt = (
        select(t.c.run_id, t.c.key)
        .where(t.c.run_id.in_(list(run_ids)))
        .group_by(t.c.run_id, t.c.key)
        .order_by(t.c.run_id, t.c.key)
    )
    out: dict[str, list[str]] = {}
    for run_id, key in (await conn.execute(stmt)).all():
        out.setdefault(str(run_id), []).append(str(key))
    return out
