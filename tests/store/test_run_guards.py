"""Every statement that moves a run's status is guarded by the transition table.

The raw PostgreSQL statements are rendered and their ``status IN (…)`` guards
read back from the SQL text; the SQLAlchemy statements are compiled and their
guard's values read from the compiled parameters. Each must equal
``ALLOWED_FROM`` of the status it moves runs to.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from triggerfish._domain.states import ALLOWED_FROM, RunStatus
from triggerfish.store import queues as queue_store
from triggerfish.store.runs import transitions

GUARD = re.compile(r"\b(?:\w+\.)?status IN \(([^)]*)\)")
#: the columns a trigger sets (the hand-off statement is rendered per column set)
TRIGGER_COLUMNS = ("id", "environment_id", "status", "priority", "payload", "created_at")

#: both dialects the store renders for (SQLAlchemy leaves their constructors untyped)
DIALECTS = [postgresql.dialect(), sqlite.dialect()]  # type: ignore[no-untyped-call]


def guards(sql: str) -> list[frozenset[RunStatus]]:
    """The status sets of the ``status IN (…)`` terms of ``sql``, in order."""
    # the fair tag's service clock reads active and queued runs: a read, not a guard
    clock = queue_store.service_clock_sql().replace(":env", "$1").replace(":now", "$4::float8")
    sql = sql.replace(clock, "")
    found = []
    for match in GUARD.finditer(sql):
        values = [v.strip().strip("'") for v in match.group(1).split(",")]
        found.append(frozenset(RunStatus(v) for v in values))
    return found


RAW = {
    "claim": (transitions._STATEMENT, [RunStatus.DEQUEUED]),
    "report and claim": (
        transitions._WITH_SUCCESSES,
        [RunStatus.DEQUEUED, RunStatus.COMPLETED],
    ),
    "a trigger handed to a parked claim": (
        transitions._pg_hand_off_statement(TRIGGER_COLUMNS),
        [RunStatus.DEQUEUED],
    ),
}


@pytest.mark.parametrize("name", sorted(RAW))
def test_each_raw_statement_guards_with_the_transition_table(name: str) -> None:
    sql, targets = RAW[name]
    assert guards(sql) == [ALLOWED_FROM[to] for to in targets]


def test_the_guard_reader_sees_a_guard_that_strays_from_the_table() -> None:
    stray = transitions._STATEMENT.replace(
        "status IN ('QUEUED')", "status IN ('QUEUED', 'WAITING')"
    )
    assert guards(stray) != [ALLOWED_FROM[RunStatus.DEQUEUED]]


MOVABLE = [to for to in RunStatus if ALLOWED_FROM[to]]


def _guard_values(stmt: Any, dialect: Any) -> list[frozenset[RunStatus]]:
    params = stmt.compile(dialect=dialect).params
    return [
        frozenset(RunStatus(v) for v in value)
        for key, value in params.items()
        if key.startswith("status_") and isinstance(value, list)
    ]


@pytest.mark.parametrize("dialect", DIALECTS, ids=["pg", "sqlite"])
@pytest.mark.parametrize("to", MOVABLE, ids=str)
def test_each_general_transition_guards_with_the_transition_table(
    to: RunStatus, dialect: Any
) -> None:
    one = transitions._transition_statement(to, True, True, ())
    many = transitions._transition_many_statement(to, True, (), 2, False)
    assert _guard_values(one, dialect) == [ALLOWED_FROM[to]]
    assert _guard_values(many, dialect) == [ALLOWED_FROM[to]]


@pytest.mark.parametrize("dialect", DIALECTS, ids=["pg", "sqlite"])
def test_the_general_claim_guards_with_the_transition_table(dialect: Any) -> None:
    claim = transitions._claim_statement(2)
    assert _guard_values(claim, dialect) == [ALLOWED_FROM[RunStatus.DEQUEUED]]


def test_a_status_set_only_at_creation_has_no_guard_to_render() -> None:
    from triggerfish.store.runs import _render

    with pytest.raises(ValueError, match="only at creation"):
        _render.guard("status", RunStatus.DELAYED)
