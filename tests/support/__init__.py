"""Test helpers: waiting on conditions, databases, servers and worker processes.

The rest of the package: ``in_process`` (a worker that runs attempts in the test's
own process, for durable-execution tests) and ``machines`` (the base of the
hypothesis state machines). Fixtures stay in the ``conftest.py`` files.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import inspect
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar, overload

import httpx

from tests.support import launcher
from tests.support.launcher import Launched, launch
from triggerfish import Triggerfish
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.store.db import Database, sqlite_url
from triggerfish.store.migrate import upgrade

if TYPE_CHECKING:
    from triggerfish.cli._serve import EmbeddedServer

T = TypeVar("T")
#: what a condition returns while it does not hold yet
NotYet: TypeAlias = Literal[False] | None

#: the stores every store feature is tested on
BACKENDS = ["sqlite", "postgresql"]

PG_ADMIN_URL = os.environ.get(
    "TRIGGERFISH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
E2E_PROJECT = Path(__file__).parent.parent / "e2e_project"

#: the keyring secret every server of this test session shares (servers of one
#: store must share it: an attempt credential one signs, another verifies)
SERVER_SECRET = secrets.token_urlsafe(32)


def wait_for(
    cond: Callable[[], T | NotYet],
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@overload
async def wait_for_async(
    cond: Callable[[], Awaitable[T | NotYet]],
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def wait_for_async(
    cond: Callable[[], T | NotYet],
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def wait_for_async(
    cond: Callable[[], Any],
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "condition",
) -> Any:
    """``wait_for`` in an event loop: ``cond`` may be a plain check or a coroutine's."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class ClaimCounter:
    """Counts the claims an engine has finished (see :func:`claims_counted`)."""

    def __init__(self, engine: Engine) -> None:
        self.finished = 0
        self._claim = engine.dequeue.claim
        engine.dequeue.claim = self._counted  # type: ignore[method-assign]

    async def _counted(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._claim(*args, **kwargs)
        finally:
            self.finished += 1


_claim_counters: weakref.WeakKeyDictionary[Engine, ClaimCounter] = weakref.WeakKeyDictionary()


def claims_counted(engine: Engine) -> ClaimCounter:
    """The count of the claims ``engine`` has finished, from the first call on.

    A long poll that has looked for work once and found none is waiting: it took
    its wake-up event before looking, so from then on a trigger is handed to it or
    wakes it. "One more claim finished" is the moment a poll waits, or has looked
    again after a wake-up.
    """
    if engine not in _claim_counters:
        _claim_counters[engine] = ClaimCounter(engine)
    return _claim_counters[engine]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


# -- databases ------------------------------------------------------------------------


async def migrate_async(url: str) -> None:
    """Bring the database at ``url`` to the latest schema."""
    db = Database(url)
    try:
        await upgrade(db)
    finally:
        await db.dispose()  # SQLite: the last connection's close folds the WAL into the file


def migrate(url: str) -> None:
    asyncio.run(migrate_async(url))


_sqlite_template: Path | None = None


def sqlite_template() -> Path:
    """A SQLite file migrated once per test process; databases are copies of it."""
    global _sqlite_template
    if _sqlite_template is None:
        folder = Path(tempfile.mkdtemp(prefix="tf-sqlite-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        migrate(sqlite_url(folder / "template.db"))
        _sqlite_template = folder / "template.db"
    return _sqlite_template


def new_sqlite_database(path: Path) -> str:
    """A migrated, empty SQLite database at ``path`` (a copy of the template); its URL."""
    shutil.copyfile(sqlite_template(), path)
    return sqlite_url(path)


async def _pg_admin() -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(PG_ADMIN_URL)
    except OSError as exc:
        raise RuntimeError(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        ) from None


async def _pg_admin_execute(sql: str) -> None:
    conn = await _pg_admin()
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_execute(sql: str) -> None:
    asyncio.run(_pg_admin_execute(sql))


def pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def new_pg_template(name: str) -> None:
    """Create the PostgreSQL database ``name`` (anew) and migrate it."""
    pg_execute(f'DROP DATABASE IF EXISTS "{name}"')
    pg_execute(f'CREATE DATABASE "{name}"')
    migrate(pg_url(name))


def _fresh_pg_name() -> str:
    return f"tf_test_{uuid.uuid4().hex[:12]}"


@dataclass
class _PgPool:
    """The emptied clones of one template this process keeps for its next tests.

    Cloning a template and dropping the clone cost a PostgreSQL test far more than
    the test itself (the clone writes the whole database, the drop removes its
    files). A released clone is instead renamed (a client still holding its old
    name cannot reach it) and only the tables it wrote are truncated
    (:func:`_pg_truncate`). A clone whose schema a test changed is dropped.
    """

    template: str
    #: the schema of a fresh clone (see ``_PG_SCHEMA``), once known
    schema: str | None = None
    #: ``pg_total_relation_size`` of each table of a fresh clone
    sizes: dict[str, int] = field(default_factory=dict)
    free: list[str] = field(default_factory=list)


#: the pools of this process, by template; a clone's template, by the clone's name
_pg_pools: dict[str, _PgPool] = {}
_pg_pooled: dict[str, str] = {}

#: the tables, columns, indexes, sequences and functions of the public schema, and
#: the migration a database is at: a clone the tests left with another is dropped
_PG_SCHEMA = """
SELECT concat_ws('|',
  (SELECT string_agg(c.relname || ':' || c.relkind::text || ':' || coalesce(a.attname, '') || ':'
                     || coalesce(a.atttypid::text, ''), ',' ORDER BY c.relname, a.attnum)
   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
   WHERE n.nspname = 'public'),
  (SELECT string_agg(p.proname, ',' ORDER BY p.proname)
   FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'),
  (SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version))
"""
_PG_TABLE_SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'
"""
_PG_USED_SEQUENCES = """
SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL
"""


async def _pg_state(conn: Any) -> tuple[str, dict[str, int]]:
    schema = await conn.fetchval(_PG_SCHEMA)
    sizes = {row[0]: int(row[1]) for row in await conn.fetch(_PG_TABLE_SIZES)}
    return str(schema), sizes


async def _pg_clone(pool: _PgPool) -> str:
    import asyncpg

    name = _fresh_pg_name()
    await _pg_admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{pool.template}"')
    if pool.schema is None:
        try:
            conn = await asyncpg.connect(pg_url(name))
            try:
                pool.schema, pool.sizes = await _pg_state(conn)
            finally:
                await conn.close()
        except BaseException:
            await _pg_admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            raise
    return name


async def _pg_renamed(name: str) -> str:
    """``name`` under a fresh name, its sessions ended."""
    import asyncpg

    fresh = _fresh_pg_name()
    admin = await _pg_admin()
    try:
        for _ in range(50):
            await admin.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            try:
                await admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{fresh}"')
                return fresh
            except asyncpg.ObjectInUseError:  # a session came back meanwhile
                await asyncio.sleep(0.05)
        raise RuntimeError(f"sessions keep connecting to {name}")
    finally:
        await admin.close()


async def _pg_truncate(conn: Any, tables: Sequence[str]) -> None:
    """Empty ``tables`` as a fresh clone's are, and restart the sequences used.

    A TRUNCATE, not a DELETE: new empty files for the tables and their indexes,
    and no row count the planner could go by, so queries are planned as on a
    fresh clone (an ORDER BY with ties answers in the same order).
    """
    used = [row[0] for row in await conn.fetch(_PG_USED_SEQUENCES)]
    async with conn.transaction():
        if tables:
            names = ", ".join(f'"{t}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} CASCADE")
            # statistics an automatic ANALYZE gathered meanwhile
            await conn.execute(
                "DELETE FROM pg_statistic WHERE starelid = ANY($1::regclass[])", list(tables)
            )
        for sequence in used:  # an insert rolled back advances one too
            await conn.execute(f'ALTER SEQUENCE "{sequence}" RESTART')


async def _pg_written(conn: Any, pool: _PgPool) -> list[str] | None:
    """The tables written since the clone was made; None if its schema changed."""
    schema, sizes = await _pg_state(conn)
    if schema != pool.schema or sizes.keys() != pool.sizes.keys():
        return None
    return sorted(t for t, size in sizes.items() if size != pool.sizes[t])


async def empty_pg_clone(conn: Any, name: str) -> None:
    """Empty the clone ``name`` (of :func:`new_pg_database`) through ``conn``, its
    only session: the tables written since it was made are truncated."""
    written = await _pg_written(conn, _pg_pools[_pg_pooled[name]])
    if written is None:
        raise AssertionError(f"the schema of {name} was changed")
    await _pg_truncate(conn, written)


async def _pg_emptied(pool: _PgPool, name: str) -> bool:
    """Empty the tables of ``name`` that were written; False if its schema changed."""
    import asyncpg

    conn = await asyncpg.connect(pg_url(name))
    try:
        written = await _pg_written(conn, pool)
        if written is None:
            return False
        await _pg_truncate(conn, written)
        return True
    finally:
        await conn.close()


async def _pg_release(name: str) -> None:
    template = _pg_pooled.pop(name)
    pool = _pg_pools[template]
    fresh = await _pg_renamed(name)
    if await _pg_emptied(pool, fresh):
        _pg_pooled[fresh] = template
        pool.free.append(fresh)
    else:
        await _pg_admin_execute(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE)')


def new_pg_database(template: str) -> str:
    """A migrated, empty clone of ``template`` under a fresh name; its name.

    Released with :func:`drop_pg_database`, which keeps it for the process's next
    test (see :class:`_PgPool`).
    """
    pool = _pg_pools.setdefault(template, _PgPool(template))
    name = pool.free.pop() if pool.free else asyncio.run(_pg_clone(pool))
    _pg_pooled[name] = template
    return name


def drop_pg_database(name: str) -> None:
    """Drop the database ``name``; a clone of a template is emptied and kept instead."""
    if name in _pg_pooled:
        asyncio.run(_pg_release(name))
    else:
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_pg_pool(template: str) -> None:
    """Drop the clones of ``template`` this process kept (the session is over)."""
    pool = _pg_pools.pop(template, None)
    for name in pool.free if pool else ():
        _pg_pooled.pop(name, None)
        drop_pg_database(name)


@contextlib.contextmanager
def database(backend: str, folder: Path, pg_template: str | None = None) -> Iterator[str]:
    """A migrated, empty database on ``backend`` while the block runs; its URL.

    SQLite: a copy of the template in ``folder``; PostgreSQL: a clone of
    ``pg_template`` (the ``pg_template`` fixture), released afterwards
    (:func:`drop_pg_database`).
    """
    if backend == "sqlite":
        yield new_sqlite_database(folder / "store.db")
        return
    assert pg_template, "a PostgreSQL database is cloned from the pg_template fixture"
    name = new_pg_database(pg_template)
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


# -- engines in the test's event loop ------------------------------------------------------


@contextlib.asynccontextmanager
async def started_engine(
    db_url: str, clock: ManualClock, *, maintenance_interval: float = 0.05
) -> AsyncIterator[Engine]:
    """An engine on ``db_url`` with a manual clock and no background loop."""
    eng = Engine.create(
        ServerSettings(
            database_url=db_url, heartbeat_timeout=30, maintenance_interval=maintenance_interval
        ),
        clock=clock,
    )
    await eng.start(background=False)
    await eng.environments.bootstrap()
    try:
        yield eng
    finally:
        await eng.close()


def create_key(db_url: str, env: str = "dev") -> str:
    """A fresh secret key for ``env`` (bootstrapping the project if needed)."""

    async def go() -> str:
        # the servers' secret: the key's sealed copy (public tokens) must open there
        settings = ServerSettings(database_url=db_url, server_secret=SERVER_SECRET)
        eng = Engine.create(settings)
        await eng.start(background=False)
        try:
            await eng.environments.bootstrap()
            key, _ = await eng.environments.create_key(env, "test")
            return key
        finally:
            await eng.close()

    return asyncio.run(go())


# -- a server in the test's event loop ----------------------------------------------------


async def serve_in_loop(server: EmbeddedServer) -> asyncio.Task[None]:
    """Start ``server`` (uvicorn, see ``cli/_serve.py``) in this loop; once it accepts."""
    serving = asyncio.create_task(server.serve())
    await wait_for_async(lambda: server.started, 10, what="the server to start")
    return serving


async def stop_serving(server: EmbeddedServer, serving: asyncio.Task[None]) -> None:
    server.should_exit = True
    await asyncio.wait_for(serving, 15)


# -- processes ------------------------------------------------------------------------


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERFISH_")}
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return launcher.run(args, env=_env({"COLUMNS": "200", **(env or {})}), cwd=cwd, timeout=timeout)


@dataclass
class ServerProc:
    url: str
    db_url: str
    proc: Launched
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    db_url: str,
    log_dir: Path,
    *,
    heartbeat_timeout: float = 3.0,
    extra_env: dict[str, str] | None = None,
    port: int | None = None,
    ready_timeout: float = 30.0,
) -> ServerProc:
    """``triggerfish server`` on ``db_url``, on ``port`` (a restart) or a free one."""
    port = port or free_port()
    log = log_dir / f"server-{port}.log"
    env = _env(
        {
            "DATABASE_URL": db_url,
            "TRIGGERFISH_SERVER_SECRET": SERVER_SECRET,
            "TRIGGERFISH_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
            "TRIGGERFISH_MAINTENANCE_INTERVAL": "0.2",
            **(extra_env or {}),
        }
    )
    proc = launch(["server", "--port", str(port)], env=env, log=log)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text()}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, timeout=ready_timeout, interval=0.1, what="server to accept requests")
    except AssertionError:
        proc.kill()  # a server that never answered is not left behind
        proc.wait(10)
        raise
    return ServerProc(url, db_url, proc, log)


@dataclass
class WorkerProc:
    proc: Launched
    log: Path
    children: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60) -> WorkerProc:
        """Wait until the worker has registered and its task processes are warm."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log.read_text()}")
            return "serving" in self.log.read_text()

        wait_for(ready, timeout=timeout, interval=0.05, what="worker to register")
        return self

    def kill_hard(self) -> list[int]:
        """SIGKILL the worker and its task processes, as a machine loss would."""
        kids = children_of(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()
        return kids

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_worker(
    server: ServerProc,
    key: str,
    log_dir: Path,
    *,
    concurrency: int = 2,
    project: Path = E2E_PROJECT,
    grace: float = 30.0,
    extra_env: dict[str, str] | None = None,
    name: str = "w",
    wait: bool = True,
    api_url: str | None = None,
) -> WorkerProc:
    """``triggerfish worker`` against ``server`` (or the servers ``api_url`` lists)."""
    log = log_dir / f"worker-{name}-{uuid.uuid4().hex[:6]}.log"
    env = _env({"TRIGGERFISH_SECRET_KEY": key, **(extra_env or {})})
    proc = launch(
        [
            "worker",
            "--api-url",
            api_url or server.url,
            "--project",
            str(project),
            "--concurrency",
            str(concurrency),
            "--grace-period",
            str(grace),
            "--name",
            name,
        ],
        env=env,
        log=log,
        new_session=True,
    )
    return WorkerProc(proc, log).wait_ready() if wait else WorkerProc(proc, log)


@contextlib.contextmanager
def processes_stopped(*procs: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            with contextlib.suppress(Exception):
                if isinstance(p, WorkerProc):
                    if p.proc.poll() is None:
                        os.killpg(p.pid, signal.SIGKILL)
                        p.proc.wait()
                else:
                    p.stop()


@dataclass
class Stack:
    """A server process on its own database, a key of its dev environment, a client."""

    server: ServerProc
    key: str
    client: Triggerfish
    logs: Path
    backend: str

    def worker(self, **kwargs: Any) -> WorkerProc:
        return start_worker(self.server, self.key, self.logs, **kwargs)


@contextlib.contextmanager
def open_stack(
    backend: str,
    folder: Path,
    pg_template: str | None = None,
    *,
    workers: Sequence[dict[str, Any]] = (),
) -> Iterator[Stack]:
    """A :class:`Stack` on a fresh database, with a worker started for each of
    ``workers`` (the keyword arguments of :func:`start_worker`); all stopped after."""
    with database(backend, folder, pg_template) as url, contextlib.ExitStack() as running:
        key = create_key(url)
        server = start_server(url, folder)
        running.enter_context(processes_stopped(server))
        for options in workers:
            worker = start_worker(server, key, folder, **options)
            running.enter_context(processes_stopped(worker))
        client = Triggerfish(api_url=server.url, secret_key=key)
        running.callback(client.close)
        yield Stack(server, key, client, folder, backend)
