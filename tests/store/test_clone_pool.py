"""The tests' PostgreSQL clones (``tests/support``): a released clone is kept for the
next test only as a fresh clone would be (renamed, every row gone, sequences
restarted); one whose schema a test changed is dropped, never handed out again."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tests import support

_ROWS = """
SELECT c.relname, (xpath('/row/n/text()',
  query_to_xml(format('SELECT count(*) AS n FROM %I', c.relname), false, true, '')))[1]::text::int
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'
"""


def _fetch(name: str, sql: str) -> list[Any]:
    async def go() -> list[Any]:
        conn = await asyncpg.connect(support.pg_url(name))
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(go())


def _oid(name: str) -> int | None:
    rows = _fetch("postgres", f"SELECT oid FROM pg_database WHERE datname = '{name}'")
    return int(rows[0][0]) if rows else None


def test_a_released_clone_comes_back_renamed_and_empty(pg_template: str) -> None:
    used = support.new_pg_database(pg_template)
    support.create_key(support.pg_url(used))  # a project, an environment, a key
    assert any(n for _, n in _fetch(used, _ROWS)), "the test wrote nothing: proves nothing"
    _fetch(used, "SELECT nextval('changes_id_seq')")
    oid = _oid(used)
    support.drop_pg_database(used)

    again = support.new_pg_database(pg_template)
    try:
        assert again != used and _oid(used) is None  # the old name reaches nothing
        assert _oid(again) == oid  # the same database, kept
        assert {n for _, n in _fetch(again, _ROWS)} == {0}
        assert _fetch(again, "SELECT nextval('changes_id_seq')")[0][0] == 1
        assert [r[0] for r in _fetch(again, "SELECT version_num FROM alembic_version")] == [
            r[0] for r in _fetch(pg_template, "SELECT version_num FROM alembic_version")
        ]
    finally:
        support.drop_pg_database(again)


def test_a_clone_whose_schema_changed_is_dropped(pg_template: str) -> None:
    changed = support.new_pg_database(pg_template)
    _fetch(changed, "CREATE TABLE stray (id int)")
    oid = _oid(changed)
    support.drop_pg_database(changed)

    fresh = support.new_pg_database(pg_template)
    try:
        assert _oid(fresh) != oid
        assert not _fetch(fresh, "SELECT 1 FROM pg_class WHERE relname = 'stray'")
        assert oid not in [r[0] for r in _fetch("postgres", "SELECT oid FROM pg_database")]
    finally:
        support.drop_pg_database(fresh)
