"""Stored runs with their ids read as positions, for comparing two paths' rows.

The equivalence tests (``tests/store/test_fast_paths.py``, ``test_insert_paths.py``)
run the same work down two paths in two environments and compare what each
stored; the ids differ, so each is replaced by its name (``run0``,
``run0/attempt1``, ``worker``) first.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import RunRecord
from triggerfish.store import runs as run_store


def named(text: str | None, names: dict[str, str]) -> str | None:
    """``text`` with every id of ``names`` replaced by its name."""
    for raw, name in names.items():
        text = None if text is None else text.replace(raw, name)
    return text


def named_run(row: RunRecord, names: dict[str, str], ignored: set[str]) -> dict[str, Any]:
    """The run's columns less ``ignored``, its attempt and worker by name."""
    run = {k: v for k, v in dataclasses.asdict(row).items() if k not in ignored}
    run["current_attempt"] = names.get(row.current_attempt_id or "")
    run["worker"] = names.get(row.worker_id or "")
    return run


async def named_events(
    conn: AsyncConnection, run_id: str, names: dict[str, str]
) -> list[tuple[Any, ...]]:
    """The run's history rows, ids by name."""
    return [
        (e.from_status, e.to_status, names.get(e.attempt_id or ""), named(e.reason, names), e.at)
        for e in await run_store.list_events(conn, run_id)
    ]
