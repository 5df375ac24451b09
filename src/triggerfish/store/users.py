"""Dashboard users (their passwords arrive already hashed by the engine)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import UserRecord
from triggerfish._ids import new_id
from triggerfish.store.tables import dashboard_users


async def create_user(
    conn: AsyncConnection, username: str, password_hash: str, now: datetime, now_epoch: float
) -> str:
    """Insert a user; the store's ``DuplicateKey`` when the name is taken."""
    user_id = new_id("user")
    await conn.execute(
        insert(dashboard_users).values(
            id=user_id,
            username=username,
            password_hash=password_hash,
            created_at=now,
            sessions_valid_after=now_epoch,
        )
    )
    return user_id


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
