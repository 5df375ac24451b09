"""Dashboard users (their passwords arrive already hashed by the engine)."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import UserRecord
from triggerfish.store.tables import dashboard_users
from triggerfish.store.values import column_values


async def create_user(conn: AsyncConnection, user: UserRecord) -> None:
    """Insert a user; the store's ``DuplicateKey`` when the name is taken."""
    await conn.execute(insert(dashboard_users).values(column_values(user)))


async def user_by_name(conn: AsyncConnection, username: str) -> UserRecord | None:
    stmt = select(dashboard_users).where(dashboard_users.c.username == username)
    row = (await conn.execute(stmt)).first()
    return None if row is None else UserRecord(*row)


async def user_by_id(conn: AsyncConnection, user_id: str) -> UserRecord | None:
    stmt = select(dashboard_users).where(dashboard_users.c.id == user_id)
    row = (await conn.execute(stmt)).first()
    return None if row is None else UserRecord(*row)


async def set_password(
    conn: AsyncConnection, user_id: str, password_hash: str, now_epoch: float
) -> None:
    await conn.execute(
        update(dashboard_users)
        .where(dashboard_users.c.id == user_id)
        .values(password_hash=password_hash, sessions_valid_after=now_epoch)
    )


async def list_users(conn: AsyncConnection) -> list[UserRecord]:
    stmt = select(dashboard_users).order_by(dashboard_users.c.created_at)
    return [UserRecord(*r) for r in (await conn.execute(stmt)).all()]


async def end_sessions(conn: AsyncConnection, user_id: str, now_epoch: float) -> None:
    await conn.execute(
        update(dashboard_users)
        .where(dashboard_users.c.id == user_id)
        .values(sessions_valid_after=now_epoch)
    )
