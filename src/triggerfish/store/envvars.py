"""Environment variables: one named query per read and write.

Values arrive and leave sealed (``value_box``); the engine seals and opens
them with the keyring.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store.driver import fetch_on_driver
from triggerfish.store.tables import env_vars


@dataclass(frozen=True, slots=True)
class SealedVar:
    """One stored variable, its value still sealed."""

    name: str
    value_box: str
    is_secret: bool
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    env_vars.c.name,
    env_vars.c.value_box,
    env_vars.c.is_secret,
    env_vars.c.created_at,
    env_vars.c.updated_at,
)


async def list_vars(conn: AsyncConnection, env_id: str) -> list[SealedVar]:
    """Every variable of the environment, by name."""
    stmt = select(*_COLUMNS).where(env_vars.c.environment_id == env_id).order_by(env_vars.c.name)
    return [SealedVar(*row) for row in await conn.execute(stmt)]


async def sealed_values(conn: AsyncConnection, env_id: str) -> list[tuple[str, str]]:
    """(name, sealed value) of every variable: what an attempt is given.

    Read on every claim that hands out runs, so it goes straight to the driver:
    on PostgreSQL one round trip, without the transaction's ``BEGIN`` and
    ``COMMIT`` (a read may run on its own, see ``fetch_on_driver``).
    """
    sql = _PG_SEALED if conn.dialect.name == "postgresql" else _SQLITE_SEALED
    rows = await fetch_on_driver(conn, sql, [env_id], read_only=True)
    return [(str(name), str(box)) for name, box in rows]


_SEALED = "SELECT name, value_box FROM env_vars WHERE environment_id = {}"
_PG_SEALED = _SEALED.format("$1")
_SQLITE_SEALED = _SEALED.format("?")


async def get_var(conn: AsyncConnection, env_id: str, name: str) -> SealedVar | None:
    stmt = select(*_COLUMNS).where(env_vars.c.environment_id == env_id, env_vars.c.name == name)
    row = (await conn.execute(stmt)).first()
    return None if row is None else SealedVar(*row)


async def insert_var(
    conn: AsyncConnection,
    env_id: str,
    name: str,
    value_box: str,
    is_secret: bool,
    now: datetime,
    *,
    replace: bool,
) -> bool:
    """Store a variable; an existing one is replaced only with ``replace``.

    True when a row was written (a new name, or ``replace``).
    """
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(env_vars).values(
        environment_id=env_id,
        name=name,
        value_box=value_box,
        is_secret=is_secret,
        created_at=now,
        updated_at=now,
    )
    keys = [env_vars.c.environment_id, env_vars.c.name]
    if replace:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={
                "value_box": stmt.excluded.value_box,
                "is_secret": stmt.excluded.is_secret,
                "updated_at": stmt.excluded.updated_at,
            },
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    return bool((await conn.execute(stmt)).rowcount)


async def update_value(
    conn: AsyncConnection, env_id: str, name: str, value_box: str, now: datetime
) -> bool:
    """Change an existing variable's value; False when there is none."""
    stmt = (
        update(env_vars)
        .where(env_vars.c.environment_id == env_id, env_vars.c.name == name)
        .values(value_box=value_box, updated_at=now)
    )
    return bool((await conn.execute(stmt)).rowcount)


async def delete_var(conn: AsyncConnection, env_id: str, name: str) -> bool:
    stmt = delete(env_vars).where(env_vars.c.environment_id == env_id, env_vars.c.name == name)
    return bool((await conn.execute(stmt)).rowcount)
