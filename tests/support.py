"""Test helpers: waiting on conditions, databases, and real server/worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

PG_ADMIN_URL = os.environ.get(
    "TRIGGERFISH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
E2E_PROJECT = Path(__file__).parent / "e2e_project"

#: the keyring secret every server of this test session shares (servers of one
#: store must share it: an attempt credential one signs, another verifies)
SERVER_SECRET = secrets.token_urlsafe(32)


def wait_for(
    cond: Callable[[], T], timeout: float = 15.0, interval: float = 0.02, what: str = "condition"
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


async def wait_for_async(
    cond: Callable[[], Awaitable[T] | T],
    timeout: float = 15.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
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


# -- PostgreSQL ---------------------------------------------------------------------


def pg_execute(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        try:
            conn = await asyncpg.connect(PG_ADMIN_URL)
        except OSError as exc:
            raise RuntimeError(
                f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); start it with "
                "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
            ) from None
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


def pg_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def new_pg_database(template: str) -> str:
    name = f"tf_test_{uuid.uuid4().hex[:12]}"
    pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def drop_pg_database(name: str) -> None:
    pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- processes ------------------------------------------------------------------------


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERFISH_")}
    env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triggerfish.cli.main", *args],
        env=_env({"COLUMNS": "200", **(env or {})}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class ServerProc:
    url: str
    db_url: str
    proc: subprocess.Popen[bytes]
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "triggerfish.cli.main", "server", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{log.read_text()}")
        try:
            return httpx.get(url + "/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, timeout=30, interval=0.1, what="server to accept requests")
    return ServerProc(url, db_url, proc, log)


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
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
) -> WorkerProc:
    log = log_dir / f"worker-{name}-{uuid.uuid4().hex[:6]}.log"
    env = _env({"TRIGGERFISH_SECRET_KEY": key, **(extra_env or {})})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "triggerfish.cli.main",
            "worker",
            "--api-url",
            server.url,
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
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
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


#: how many times its usual examples a state machine tries (``--slow`` sets it)
EXAMPLES_FACTOR = 1


def run_machine_on(
    machine: type[Any], backend: str, machine_settings: Any, pg_template: str = ""
) -> None:
    """Run a hypothesis state machine (a ``tests.engine._machine.StoreMachine``) on
    ``backend``.

    The examples share one store, emptied for each of them, which the machine
    finds from ``backend`` and ``pg_template``: one class serves both stores.
    """
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test

    if EXAMPLES_FACTOR != 1:  # ``--slow``
        examples = machine_settings.max_examples * EXAMPLES_FACTOR
        machine_settings = settings(machine_settings, max_examples=examples)
    bound: Any = type(
        f"{machine.__name__}On{backend}",
        (machine,),
        {"backend": backend, "pg_template": pg_template},
    )
    with bound.shared_store():  # one store for all examples (``tests/engine/_machine.py``)
        run_state_machine_as_test(bound, settings=machine_settings)
