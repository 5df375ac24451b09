"""A Triggerfish deployment for benchmarks: a database, a server and a worker, as
real processes started with the ``triggerfish`` command, stopped at the end.

``postgresql`` is the production shape (``triggerfish server`` + ``triggerfish
worker`` against a fresh PostgreSQL database); ``sqlite`` is the dev shape (the
same two processes on a local SQLite file, as ``triggerfish dev`` runs them).
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench._common import (
    BENCH_DIR,
    BenchError,
    clean_env,
    free_port,
    pg_database,
    pg_url,
    spawn,
    stop_process,
    wait_until,
)

PROJECT = BENCH_DIR / "project"
TRIGGERFISH = [sys.executable, "-m", "triggerfish.cli.main"]


@dataclass
class Stack:
    """A running server (and, once started, a worker) on one database."""

    backend: str
    db_url: str
    api_url: str
    key: str
    folder: Path
    server: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: the environment every server of the stack starts with (its database, the
    #: keyring's secret they share)
    server_env: dict[str, str] = field(default_factory=dict)
    #: the project its workers serve
    project: Path = PROJECT

    def start_server(self) -> tuple[subprocess.Popen[bytes], str]:
        """Another server on the stack's database, on a free port; it and its URL.
        The caller stops it (``stop_process``)."""
        return _start_server(self.folder, self.server_env)

    def start_worker(
        self, concurrency: int = 2, timeout: float = 60, api_url: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``triggerfish worker`` (on ``api_url``, default the stack's server)
        and wait until it serves with warm task processes."""
        log = self.folder / f"worker-{len(self.workers)}.log"
        proc = spawn(
            [
                *TRIGGERFISH,
                "worker",
                "--api-url",
                api_url or self.api_url,
                "--project",
                str(self.project),
                "--concurrency",
                str(concurrency),
                "--grace-period",
                "5",
                "--name",
                f"bench-{len(self.workers)}",
            ],
            log,
            clean_env({"TRIGGERFISH_SECRET_KEY": self.key}),
        )
        self.workers.append(proc)

        def ready() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"worker exited early:\n{log.read_text()[-2000:]}")
            return "serving" in log.read_text()

        wait_until(ready, timeout, "the worker to register", interval=0.05)
        return proc

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop_process(proc)
        self.workers.clear()


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    out = subprocess.run(
        [*TRIGGERFISH, *args],
        env=clean_env({"COLUMNS": "200", **env}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise BenchError(f"triggerfish {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


@contextlib.contextmanager
def _database(backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
    elif backend == "postgresql":
        with pg_database("tf_bench") as name:
            yield pg_url(name)
    else:
        raise BenchError(f"unknown backend {backend!r} (sqlite or postgresql)")


@contextlib.contextmanager
def triggerfish_stack(
    backend: str,
    *,
    workers: int = 1,
    concurrency: int = 2,
    server_env: dict[str, str] | None = None,
    project: Path = PROJECT,
) -> Iterator[Stack]:
    """A migrated database, a server on a free port and ``workers`` worker processes
    serving ``project`` (the benchmark's tasks unless told otherwise)."""
    with (
        tempfile.TemporaryDirectory(prefix="tf-bench-") as tmp,
        _database(backend, Path(tmp)) as db_url,
    ):
        folder = Path(tmp)
        env = {"DATABASE_URL": db_url}
        _cli(["db", "migrate"], env)
        key = next(
            (
                w
                for w in _cli(["keys", "create", "--env", "dev", "--name", "bench"], env).split()
                if w.startswith("tr_")
            ),
            None,
        )
        if key is None:
            raise BenchError("`triggerfish keys create` printed no key")
        # a server refuses to start without the keyring's secret
        secret = {"TRIGGERFISH_SERVER_SECRET": secrets.token_urlsafe(32)}
        every_server = {**env, **secret, **(server_env or {})}
        server, api_url = _start_server(folder, every_server)
        stack = Stack(
            backend, db_url, api_url, key, folder, server, server_env=every_server, project=project
        )
        try:
            for _ in range(workers):
                stack.start_worker(concurrency)
            yield stack
        finally:
            stack.stop_workers()
            stop_process(server)


def _start_server(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``triggerfish server`` on a free port, once it accepts requests; it and its URL."""
    port = free_port()
    log = folder / f"server-{port}.log"
    server = spawn(
        [*TRIGGERFISH, "server", "--host", "127.0.0.1", "--port", str(port)],
        log,
        clean_env(env),
    )
    api_url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if server.poll() is not None:
            raise BenchError(f"server exited early:\n{log.read_text()[-2000:]}")
        try:
            return httpx.get(api_url + "/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, 60, "the server to accept requests", interval=0.1)
    except BaseException:
        stop_process(server)  # a server that never answered is not left behind
        raise
    return server, api_url
