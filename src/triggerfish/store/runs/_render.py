"""Pieces the raw (driver-level) statements are rendered from, so that their
guards and statuses come from ``_domain.states`` rather than being typed as
literals in SQL text."""

from __future__ import annotations

import enum

from triggerfish._domain.states import ALLOWED_FROM, RunStatus


def text(value: str) -> str:
    """``value`` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def status(value: enum.StrEnum) -> str:
    """A status as an SQL literal: ``'QUEUED'``."""
    return text(value.value)


def guard(column: str, to: RunStatus) -> str:
    """``column IN (…)``: the statuses ``ALLOWED_FROM[to]`` lets move to ``to``.

    Written as literals, not parameters: PostgreSQL's generic plans of prepared
    statements only use the partial indexes on runs (``ix_runs_queued``…) when
    the query's own terms imply the index's ``WHERE status …``.
    """
    allowed = sorted(s.value for s in ALLOWED_FROM[to])
    if not allowed:
        raise ValueError(f"no status may move to {to}: it is set only at creation")
    return f"{column} IN ({', '.join(text(s) for s in allowed)})"
