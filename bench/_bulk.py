"""Filling a benchmark store with many finished runs (W5), straight in SQL.

The rows are copies of one finished run of the benchmark (every column, so the
copy stays valid whatever columns the schema grows), with fresh ids and a
creation time one day earlier, so they are history behind the live runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

from bench._common import BenchError


def _template_sql(columns: list[str], source: str, ts: str, series: str) -> tuple[str, str]:
    copied = [c for c in columns if c not in ("id", "created_at", "updated_at")]
    target = ", ".join(["id", "created_at", "updated_at", *copied])
    values = ", ".join([source, ts, ts, *(f"r.{c}" for c in copied)])
    return target, f"SELECT {values} FROM runs r, {series}"


async def _fill_postgresql(url: str, template_id: str, count: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        columns = [
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'runs' AND table_schema = current_schema()"
            )
        ]
        target, select = _template_sql(
            columns,
            "'run_bulk' || lpad(g::text, 10, '0')",
            "r.created_at - interval '1 day'",
            "generate_series(1, $2) AS g",
        )
        await conn.execute(
            f"INSERT INTO runs ({target}) {select} WHERE r.id = $1", template_id, count
        )
        await conn.execute("ANALYZE runs")
    finally:
        await conn.close()


def _fill_sqlite(path: str, template_id: str, count: int) -> None:
    conn = sqlite3.connect(path, timeout=60)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
        target, select = _template_sql(
            columns,
            "'run_bulk' || printf('%010d', g.x)",
            "datetime(r.created_at, '-1 day')",
            "g",
        )
        conn.execute(
            "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < ?) "
            f"INSERT INTO runs ({target}) {select} WHERE r.id = ?",
            (count, template_id),
        )
        conn.commit()
        conn.execute("ANALYZE")
    finally:
        conn.close()


def fill_runs(db_url: str, template_id: str, count: int) -> float:
    """Insert ``count`` finished runs copied from ``template_id``; return the seconds it took."""
    began = time.perf_counter()
    if db_url.startswith("postgresql"):
        asyncio.run(_fill_postgresql(db_url, template_id, count))
    elif db_url.startswith("sqlite:///"):
        _fill_sqlite(db_url.removeprefix("sqlite:///"), template_id, count)
    else:
        raise BenchError(f"cannot fill {db_url}")
    return time.perf_counter() - began
