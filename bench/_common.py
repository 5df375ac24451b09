"""Shared helpers of the benchmarks: ports, processes, databases, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PG_ADMIN_URL = os.environ.get(
    "TRIGGERFISH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("TRIGGERFISH_BENCH_REDIS", "redis://127.0.0.1:6379")


#: how often a client checks whether all runs of a throughput workload are done
#: (the same for every system; the check costs the system under test a query)
DONE_POLL = 0.05
#: how often a latency client checks for one run's result where it must poll
RESULT_POLL = 0.01
#: how long after its trigger a latency client first looks for the result: the
#: look is a query to the system under test, and made at once it would compete
#: with the very start being timed (the wait does not enter the figure, which is
#: the time the task recorded)
FIRST_LOOK = 0.01


class BenchError(RuntimeError):
    """A benchmark could not be set up or did not finish in its time bound."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy, or raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without Triggerfish settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERFISH_")}
    env.pop("DATABASE_URL", None)
    env.update(extra or {})
    return env


def spawn(
    argv: Sequence[str], log: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a process in its own process group, output to ``log``."""
    return subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it is still there after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    # children (task processes, pool workers) may outlive their parent's exit
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def rss_mb(pid: int) -> float:
    """Resident set size of one process, in MiB (from /proc)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            kids.append(int(entry.name))
    return sorted(kids)


def machine_cpu_seconds() -> float:
    """CPU time spent by the whole machine so far, all cores and processes (from
    /proc/stat: user, nice, system, irq and softirq; not idle, I/O wait or steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


# -- PostgreSQL -------------------------------------------------------------------


def _pg(sql: str) -> None:
    """Run one statement on the admin database (with asyncpg, or psycopg in the peers' venv)."""
    try:
        import asyncpg
    except ImportError:
        import psycopg

        try:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(sql)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise BenchError(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}") from None
        return

    async def go() -> None:
        try:
            conn = await asyncpg.connect(PG_ADMIN_URL)
        except OSError as exc:
            raise BenchError(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}") from None
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def pg_url(name: str, driver: str = "postgresql") -> str:
    """The URL of database ``name`` on the benchmark's PostgreSQL server."""
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return driver + base[base.index(":") :] + "/" + name


@contextlib.contextmanager
def pg_database(prefix: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped when the block ends."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    _pg(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- statistics -------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) by linear interpolation between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 of latency samples in milliseconds."""
    return {f"p{p}": percentile(samples_ms, p) for p in (50, 95, 99)}


def emit(result: dict[str, object]) -> None:
    """Print a peer benchmark's result as the last line of its output, for the suite."""
    import json

    print("RESULT " + json.dumps(result), flush=True)
