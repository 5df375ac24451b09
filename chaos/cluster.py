"""The production shape: two ``triggerfish server`` processes on one PostgreSQL
database and two ``triggerfish worker`` processes, each worker on one server.

Workers take one server URL each (``--api-url``): a worker whose server is
down waits for it. Once workers accept a list (``TRIGGERFISH_API_URL``
comma-separated), ``Cluster(failover=True)`` hands each worker both URLs, its
own server first.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chaos._procs import (
    ChaosError,
    children_of,
    clean_env,
    free_port,
    spawn,
    stop_group,
    wait_until,
)

PROJECT = Path(__file__).resolve().parent / "project"
TRIGGERFISH = [sys.executable, "-m", "triggerfish.cli.main"]


@dataclass
class Settings:
    """What the cluster is started with."""

    #: a worker whose heartbeats stop for this long loses its runs (servers)
    heartbeat_timeout: float = 8.0
    #: task processes per worker
    concurrency: int = 3
    #: seconds a SIGTERMed worker lets its attempts finish
    grace: float = 3.0
    #: waits longer than this suspend the run (workers)
    suspend_threshold: float = 2.0
    #: give each worker both server URLs (needs workers that take a list)
    failover: bool = False


@dataclass
class Server:
    index: int
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    log: Path
    #: the server it talks to
    server: int
    #: every pid this worker slot has had, oldest first
    history: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def task_processes(self) -> list[int]:
        return children_of(self.pid)


class Cluster:
    """Servers and workers on ``db_url``; logs under ``folder``."""

    def __init__(self, db_url: str, effects_url: str, folder: Path, settings: Settings) -> None:
        self.db_url = db_url
        self.effects_url = effects_url
        self.folder = folder
        self.settings = settings
        self.secret = secrets.token_urlsafe(32)
        self.key = ""
        self.servers: list[Server] = []
        self.workers: list[Worker] = []
        self._server_starts = 0

    # -- setup ----------------------------------------------------------------------

    def _cli(self, *args: str) -> str:
        out = subprocess.run(
            [*TRIGGERFISH, *args],
            env=clean_env({"DATABASE_URL": self.db_url, "COLUMNS": "200"}),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if out.returncode != 0:
            raise ChaosError(f"triggerfish {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    def prepare(self) -> None:
        """Migrate the database and create the dev environment's key."""
        self._cli("db", "migrate")
        words = self._cli("keys", "create", "--env", "dev", "--name", "chaos").split()
        self.key = next((w for w in words if w.startswith("tr_")), "")
        if not self.key:
            raise ChaosError("`triggerfish keys create` printed no key")

    def start(self, servers: int = 2, workers: int = 2) -> None:
        for i in range(servers):
            self.servers.append(self._start_server(i, free_port()))
        for i in range(servers):
            self.wait_server(i)
        for i in range(workers):
            self.workers.append(self._start_worker(i, i % servers, []))
        for i in range(workers):
            self.wait_worker(i)

    # -- servers --------------------------------------------------------------------

    def _start_server(self, index: int, port: int) -> Server:
        self._server_starts += 1
        log = self.folder / f"server-{index}-{self._server_starts}.log"
        env = clean_env(
            {
                "DATABASE_URL": self.db_url,
                "TRIGGERFISH_SERVER_SECRET": self.secret,
                "TRIGGERFISH_HEARTBEAT_TIMEOUT": str(self.settings.heartbeat_timeout),
                "TRIGGERFISH_MAINTENANCE_INTERVAL": "0.5",
            }
        )
        proc = spawn([*TRIGGERFISH, "server", "--host", "127.0.0.1", "--port", str(port)], log, env)
        return Server(index, port, proc, log)

    def server_ready(self, index: int) -> bool:
        server = self.servers[index]
        if server.proc.poll() is not None:
            raise ChaosError(f"server {index} exited:\n{server.log.read_text()[-3000:]}")
        try:
            return httpx.get(server.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_server(self, index: int, timeout: float = 90) -> None:
        wait_until(lambda: self.server_ready(index), timeout, f"server {index} to answer", 0.1)

    def kill_server(self, index: int) -> int:
        """``kill -9`` of a server; its pid."""
        server = self.servers[index]
        pid = server.proc.pid
        stop_group(server.proc, signal.SIGKILL, timeout=10)
        return pid

    def restart_server(self, index: int) -> None:
        """Start server ``index`` again on its port (its workers know that URL)."""
        old = self.servers[index]
        self.servers[index] = self._start_server(index, old.port)

    # -- workers --------------------------------------------------------------------

    def _urls_for(self, server: int) -> str:
        own = self.servers[server].url
        if not self.settings.failover:
            return own
        return ",".join([own, *(s.url for s in self.servers if s.index != server)])

    def _start_worker(self, index: int, server: int, history: list[int]) -> Worker:
        log = self.folder / f"worker-{index}-{len(history)}.log"
        env = clean_env(
            {
                "TRIGGERFISH_SECRET_KEY": self.key,
                "TRIGGERFISH_SUSPEND_THRESHOLD": str(self.settings.suspend_threshold),
                "CHAOS_EFFECTS_URL": self.effects_url,
            }
        )
        proc = spawn(
            [
                *TRIGGERFISH,
                "worker",
                "--api-url",
                self._urls_for(server),
                "--project",
                str(PROJECT),
                "--concurrency",
                str(self.settings.concurrency),
                "--grace-period",
                str(self.settings.grace),
                "--name",
                f"chaos-{index}",
            ],
            log,
            env,
        )
        return Worker(index, proc, log, server, [*history, proc.pid])

    def wait_worker(self, index: int, timeout: float = 120) -> None:
        worker = self.workers[index]

        def ready() -> bool:
            if worker.proc.poll() is not None:
                raise ChaosError(f"worker {index} exited:\n{worker.log.read_text()[-3000:]}")
            # the log's 'serving' line comes once its task processes are warm
            return "serving" in worker.log.read_text(errors="replace")

        wait_until(ready, timeout, f"worker {index} to serve", 0.1)

    def kill_worker(self, index: int) -> list[int]:
        """``kill -9`` of a worker and its task processes; their pids, the worker's first."""
        worker = self.workers[index]
        pids = [worker.pid, *worker.task_processes()]
        stop_group(worker.proc, signal.SIGKILL, timeout=10)
        return pids

    def terminate_worker(self, index: int, timeout: float = 120) -> int:
        """SIGTERM a worker (graceful: attempts get the grace period); its exit code."""
        worker = self.workers[index]
        worker.proc.send_signal(signal.SIGTERM)
        try:
            return worker.proc.wait(timeout)
        finally:
            stop_group(worker.proc, signal.SIGKILL, timeout=5)

    def restart_worker(self, index: int) -> Worker:
        old = self.workers[index]
        self.workers[index] = self._start_worker(index, old.server, old.history)
        return self.workers[index]

    # -- teardown -------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM everything (workers first), SIGKILL what does not exit in time."""
        deadline = time.monotonic() + 20
        for worker in self.workers:
            stop_group(worker.proc, signal.SIGTERM, timeout=max(1.0, deadline - time.monotonic()))
        for server in self.servers:
            stop_group(server.proc, signal.SIGTERM, timeout=10)
