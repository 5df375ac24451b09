"""A throwaway PostgreSQL instance: ``initdb`` in a temporary folder, on a free port.

The shared server on 5432 is never touched. The instance runs as the
``postgres`` OS user when the suite runs as root (PostgreSQL refuses to run
as root), otherwise as the current user. The postmaster is started directly
(``postgres -D …``, not through ``pg_ctl``), so the suite holds its pid: a
crash is ``kill -9`` of the postmaster and every backend, and a restart is the
same command on the same folder and port (PostgreSQL runs crash recovery).

Example::

    with PgInstance.create(Path("/tmp/x")) as pg:
        pg.create_database("app")
        pg.crash()            # kill -9, connections refused from now on
        pg.start()            # crash recovery, then accepting again
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from chaos._procs import ChaosError, children_of, free_port, kill_group, spawn, wait_until

#: settings for a disposable instance: small, no fsync (a kill -9 of the
#: postmaster is not a power loss: the OS keeps every write()). Commits stay
#: synchronous: an acknowledged commit must be in the OS's hands before the
#: answer, or the crash would lose commits PostgreSQL had confirmed
_CONF = """
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 64MB
fsync = off
synchronous_commit = on
full_page_writes = off
unix_socket_directories = '{sockets}'
log_min_messages = warning
"""


def _bin_dir() -> Path:
    """The newest PostgreSQL's binaries under /usr/lib/postgresql (or on PATH)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ChaosError("no PostgreSQL binaries: install postgresql (initdb, postgres)")


class PgInstance:
    """One PostgreSQL postmaster on ``port`` with its data in ``folder``."""

    def __init__(self, folder: Path, port: int, user: str | None) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.user = user
        self.bin = _bin_dir()
        self.log = folder / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def create(cls, folder: Path) -> Iterator[PgInstance]:
        """initdb, start, yield; stop and remove the data afterwards."""
        user = "postgres" if os.geteuid() == 0 else None
        folder.mkdir(parents=True, exist_ok=True)
        pg = cls(folder, free_port(), user)
        pg._initdb()
        try:
            pg.start()
            yield pg
        finally:
            pg.stop()
            shutil.rmtree(pg.data, ignore_errors=True)

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def _initdb(self) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        result = subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            cwd=self.folder,
            timeout=120,
        )
        if result.returncode != 0:
            raise ChaosError(f"initdb failed:\n{result.stdout}{result.stderr}")
        with (self.data / "postgresql.conf").open("a") as fh:
            fh.write(_CONF.format(sockets=self.folder))

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, timeout: float = 60) -> None:
        """Start the postmaster (after a crash: crash recovery) and wait until it accepts."""
        self.launch()
        wait_until(self.ready, timeout, "the throwaway PostgreSQL to accept connections", 0.05)

    def launch(self) -> None:
        """Start the postmaster; :meth:`ready` says when it accepts connections."""
        if self.pid is not None:
            return
        self.proc = spawn(
            [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port)],
            self.log,
            {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
            cwd=self.folder,
            user=self.user,
        )

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise ChaosError(f"postgres exited:\n{self.log.read_text()[-3000:]}")
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            capture_output=True,
        )
        return result.returncode == 0

    def crash(self) -> list[int]:
        """``kill -9`` the postmaster and its backends at once; their pids."""
        if self.proc is None or self.pid is None:
            raise ChaosError("PostgreSQL is not running")
        pids = [self.proc.pid, *children_of(self.proc.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        kill_group(self.proc)  # the backends share its process group
        # the port is free once no process of the instance is left
        wait_until(
            lambda: not any(Path(f"/proc/{p}").exists() and _alive(p) for p in pids),
            30,
            "the killed PostgreSQL processes to be gone",
        )
        return pids

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL of whatever is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        kill_group(self.proc)

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` with psql as the superuser; its output."""
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(
                [
                    str(self.bin / "psql"),
                    "-X",
                    "-q",
                    "-t",
                    "-A",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-d",
                    database,
                    "-c",
                    sql,
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if result.returncode == 0:
                return result.stdout
            if time.monotonic() > deadline or "starting up" not in result.stderr:
                raise ChaosError(f"psql failed on {database}: {result.stderr.strip()}")
            time.sleep(0.2)

    def create_database(self, name: str) -> None:
        self.psql("postgres", f'CREATE DATABASE "{name}"')


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
