"""The Procrastinate app and tasks of the benchmark; the database URL comes from
``TF_BENCH_PROCRASTINATE_URL``, set before this module is imported."""

from __future__ import annotations

import os
import time

from procrastinate import App, PsycopgConnector

URL = os.environ.get("TF_BENCH_PROCRASTINATE_URL", "")
app = App(connector=PsycopgConnector(conninfo=URL))


@app.task(name="noop", queue="tfbench")
async def noop(i: int) -> None:
    return None


@app.task(name="stamp", queue="tfbench")
async def stamp(i: int) -> None:
    started = time.time()
    await app.connector.execute_query_async(
        "INSERT INTO bench_stamps (i, started) VALUES (%(i)s, %(started)s)", i=i, started=started
    )


@app.task(name="hop", queue="tfbench")
async def hop(chain: int, n: int) -> None:
    if n < 9:
        await hop.defer_async(chain=chain, n=n + 1)
