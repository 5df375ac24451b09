"""Shared positions of history walks (``history_cursors``): walks of the
history's primary key that every server runs but whose rows only one server may
act on. Each server takes the next rows by moving a position with a
compare-and-set (:func:`move_cursor`), or, where acting on them can fail
halfway (a send to a collector), by leasing the rows after the position
(:func:`lease_after`) and moving it once they were handled
(:func:`settle_lease`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish.store.tables import history_cursors

#: the export of finished runs' spans (engine/traces.py)
EXPORT_CURSOR = "trace-export"
#: the run counters of /metrics (engine/metrics.py)
METRICS_CURSOR = "metrics"


@dataclass(frozen=True, slots=True)
class CursorState:
    position: int
    #: the pass sending the rows after ``position``, until ``lease_expires_at``
    lease_holder: str | None
    lease_expires_at: float | None

    def leased_at(self, now: float) -> bool:
        """Whether a pass holds an unexpired lease on the rows after the position."""
        return self.lease_expires_at is not None and self.lease_expires_at > now


async def cursor_state(conn: AsyncConnection, name: str) -> CursorState | None:
    stmt = select(
        history_cursors.c.position,
        history_cursors.c.lease_holder,
        history_cursors.c.lease_expires_at,
    ).where(history_cursors.c.name == name)
    row = (await conn.execute(stmt)).first()
    return None if row is None else CursorState(int(row[0]), row[1], row[2])


async def cursor_position(conn: AsyncConnection, name: str) -> int | None:
    state = await cursor_state(conn, name)
    return None if state is None else state.position


async def start_cursor(conn: AsyncConnection, name: str, position: int) -> None:
    """Create cursor ``name`` at ``position`` unless a server already did."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(history_cursors)
        .values(name=name, position=position)
        .on_conflict_do_nothing()
    )
    await conn.execute(stmt)


async def move_cursor(conn: AsyncConnection, name: str, was: int, to: int) -> bool:
    """Move cursor ``name`` from ``was`` to ``to``; False if another server moved it
    first (the rows in between are that server's)."""
    stmt = (
        update(history_cursors)
        .where(history_cursors.c.name == name, history_cursors.c.position == was)
        .values(position=to)
    )
    return bool((await conn.execute(stmt)).rowcount)


async def lease_after(
    conn: AsyncConnection, name: str, position: int, holder: str, until: float, now: float
) -> bool:
    """Lease the rows after ``position`` of cursor ``name`` to ``holder`` until
    ``until``; False if the cursor moved or another holder's lease has not expired."""
    stmt = (
        update(history_cursors)
        .where(
            history_cursors.c.name == name,
            history_cursors.c.position == position,
            or_(
                history_cursors.c.lease_expires_at.is_(None),
                history_cursors.c.lease_expires_at <= now,
            ),
        )
        .values(lease_holder=holder, lease_expires_at=until)
    )
    return bool((await conn.execute(stmt)).rowcount)


async def settle_lease(conn: AsyncConnection, name: str, holder: str, to: int | None) -> bool:
    """End ``holder``'s lease on cursor ``name``, moving the position to ``to`` (the
    rows up to it were sent) or leaving it (None: they were not); False if the
    lease was no longer ``holder``'s (it expired and another pass took it)."""
    values: dict[str, Any] = {"lease_holder": None, "lease_expires_at": None}
    if to is not None:
        values["position"] = to
    stmt = (
        update(history_cursors)
        .where(history_cursors.c.name == name, history_cursors.c.lease_holder == holder)
        .values(**values)
    )
    return bool((await conn.execute(stmt)).rowcount)
