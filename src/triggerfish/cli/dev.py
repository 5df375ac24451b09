"""``triggerfish dev``: server + worker on the embedded SQLite store, reloading on change.

The server runs in this process; the worker runs as a child process in its own
session (so Ctrl-C reaches only us, and we stop it gracefully). When a task
file changes, a new worker starts on the new code (its code hash is the new
version) and takes the new runs, while the old one stops claiming and drains:
its running attempts end on the code they started on, never cut off by a save.
A task file that fails to import disables only its own tasks: the worker
serves the rest, and the error shows in this console.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import watchfiles
from pydantic import SecretStr
from rich.text import Text

from triggerfish.cli._common import DEV_KEY_FILE, SERVER_SECRET_FILE, STATE_DIR, console
from triggerfish.cli._serve import make_server
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.keyring import generate_secret
from triggerfish.store.db import Database, sqlite_url
from triggerfish.store.envs import generate_key
from triggerfish.store.migrate import upgrade
from triggerfish.worker.discovery import ProjectConfig
from triggerfish.worker.supervisor import BROKEN_FILE_MARK

WORKER_GRACE = 5.0
#: how long a replaced worker may take to finish its running attempts
DRAIN_GRACE = 24 * 3600.0
#: seconds the banner waits for the worker to register its tasks
WORKER_READY = 30.0


#: what the banner's Try line triggers when the project has it: the example
#: project's greeting, which an empty payload completes (its first task in
#: alphabetical order, charge-card, refuses one)
TRY_TASK = "hello-world"


class DevSession:
    def __init__(self, config: ProjectConfig, host: str, port: int, concurrency: int) -> None:
        self.config = config
        self.host, self.port = host, port
        self.concurrency = concurrency
        self.state = config.root / STATE_DIR
        self.log_dir = self.state / "logs"
        self.api_url = f"http://{host}:{port}"
        self._worker: subprocess.Popen[bytes] | None = None
        self._worker_log: IO[bytes] | None = None
        #: replaced workers finishing their running attempts
        self._draining: set[subprocess.Popen[bytes]] = set()
        #: known once :meth:`prepare` has bootstrapped the project
        self.project_ref = ""

    async def prepare(self) -> tuple[Engine, str]:
        """Database migrated, project bootstrapped, dev key known."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        url = sqlite_url(self.state / "dev.db")
        db = Database(url)
        try:
            await upgrade(db)
        finally:
            await db.dispose()
        engine = Engine.create(
            ServerSettings(
                database_url=url,
                server_secret=SecretStr(self._server_secret()),
                heartbeat_timeout=10,
                maintenance_interval=0.5,
                # each reload is a new version; waiting runs resume on the new code
                lock_run_versions=False,
                project_ref=self._project_ref(),
            )
        )
        await engine.start()
        self.project_ref = await engine.environments.bootstrap(self.config.root.name)
        key = self._dev_key()
        await engine.environments.adopt_key("dev", key, "dev server")
        return engine, key

    def _project_ref(self) -> str | None:
        """``TRIGGER_PROJECT_REF`` (or ``TRIGGERFISH_PROJECT_REF``) from the environment,
        else from the project's ``.env``, as Trigger.dev's CLI reads it."""
        for name in ("TRIGGERFISH_PROJECT_REF", "TRIGGER_PROJECT_REF"):
            if os.environ.get(name):
                return os.environ[name]
        dotenv = self.config.root / ".env"
        if dotenv.is_file():
            from dotenv import dotenv_values

            values = dotenv_values(dotenv)
            return values.get("TRIGGERFISH_PROJECT_REF") or values.get("TRIGGER_PROJECT_REF")
        return None

    def _dev_key(self) -> str:
        # The dev key lives in a local file (mode 0600) so `dev` can print it on
        # every start; the database keeps only its hash, as for every key.
        path = self.state / DEV_KEY_FILE
        if path.is_file():
            return path.read_text().strip()
        key = generate_key("dev")
        path.touch(mode=0o600)
        path.write_text(key + "\n")
        return key

    def _server_secret(self) -> str:
        # the keyring's secret, kept beside the store so that attempt credentials
        # signed before a restart still verify; it never leaves this machine
        path = self.state / SERVER_SECRET_FILE
        if path.is_file():
            return path.read_text().strip()
        secret = generate_secret()
        path.touch(mode=0o600)
        path.write_text(secret + "\n")
        return secret

    def start_worker(self, key: str) -> None:
        if self._worker_log is not None:
            self._worker_log.close()  # a replaced worker keeps its own descriptor
        self._worker_log = (self.log_dir / "worker.log").open("ab")
        args = [
            sys.executable,
            "-m",
            "triggerfish.cli.main",
            "worker",
            "--api-url",
            self.api_url,
            "--project",
            str(self.config.root),
            "--concurrency",
            str(self.concurrency),
            "--grace-period",
            str(DRAIN_GRACE),
            "--skip-broken-files",
        ]
        for d in self.config.dirs:
            args += ["--dir", d]
        env = {**os.environ, "TRIGGERFISH_SECRET_KEY": key}
        self._worker = subprocess.Popen(
            args,
            env=env,
            stdout=self._worker_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def stop_workers(self) -> None:
        """Stop every worker (Ctrl-C): running attempts get ``WORKER_GRACE`` seconds,
        then go back to the queue."""
        procs = [p for p in (self._worker, *self._draining) if p is not None]
        self._worker = None
        self._draining.clear()
        await asyncio.gather(*(_stop(p) for p in procs))
        if self._worker_log is not None:
            self._worker_log.close()
            self._worker_log = None

    def replace_worker(self, key: str) -> None:
        """Start a worker on the new code; the old one stops claiming and drains."""
        old = self._worker
        self.start_worker(key)
        if old is not None and old.poll() is None:
            old.send_signal(signal.SIGTERM)  # one SIGTERM: finish what runs, claim nothing
            self._draining.add(old)
            asyncio.get_running_loop().create_task(self._drained(old))

    async def _drained(self, proc: subprocess.Popen[bytes]) -> None:
        await asyncio.to_thread(proc.wait)
        if proc in self._draining:
            self._draining.discard(proc)
            console.print("[dim]the previous worker finished its runs and stopped[/]")

    async def report_broken_files(self, stop: asyncio.Event) -> None:
        """Show each task file that a worker could not import (its tasks are off)."""
        path = self.log_dir / "worker.log"
        offset = path.stat().st_size if path.exists() else 0
        while not stop.is_set():
            with contextlib.suppress(OSError):
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                complete = chunk.rfind(b"\n") + 1
                offset += complete
                for raw in chunk[:complete].decode(errors="replace").splitlines():
                    _, mark, rest = raw.partition(BROKEN_FILE_MARK)
                    if mark:
                        console.print(
                            Text("task file not loaded: ", style="bold red") + Text(rest),
                            highlight=False,
                        )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)

    async def report_worker_exit(self, stop: asyncio.Event) -> None:
        """Say at once when the worker stops on its own (a task file that fails to import).

        The worker's output goes to its log file; without this a broken task
        file would only show up as runs that never start.
        """
        reported: subprocess.Popen[bytes] | None = None
        while not stop.is_set():
            proc = self._worker
            if proc is not None and proc is not reported and proc.poll() is not None:
                reported = proc
                console.print(
                    f"[bold red]the worker stopped (exit code {proc.returncode})[/]; "
                    "it restarts when a task file changes. Its last lines:"
                )
                for line in self._worker_log_tail():
                    console.print(Text("  | ", style="dim") + Text(line), highlight=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def _worker_log_tail(self, lines: int = 8) -> list[str]:
        try:
            text = (self.log_dir / "worker.log").read_text(errors="replace")
        except OSError:
            return []
        return text.rstrip().splitlines()[-lines:]

    async def watch(self, key: str, stop: asyncio.Event) -> None:
        folders = [str(self.config.root / d) for d in self.config.dirs]
        async for changes in watchfiles.awatch(
            *folders, stop_event=stop, watch_filter=watchfiles.PythonFilter()
        ):
            names = sorted({Path(p).name for _, p in changes})
            console.print(
                f"[yellow]changed:[/] {', '.join(names)} - a new worker takes new runs; "
                "running ones finish on the code they started on"
            )
            self.replace_worker(key)

    async def wait_until_serving(
        self, engine: Engine, since: float, stop: asyncio.Event
    ) -> list[str] | None:
        """The task ids the worker started at ``since`` serves, once it has registered.

        None if it stopped first (a task file that fails to import: the exit is
        reported on its own), or took longer than ``WORKER_READY`` seconds.
        """
        env = await engine.environments.by_slug("dev")
        deadline = time.monotonic() + WORKER_READY
        while not stop.is_set() and time.monotonic() < deadline:
            online = await engine.workers.online(env.id, since)
            if online:
                return sorted({t for w in online for t in w.task_ids})
            if self._worker is None or self._worker.poll() is not None:
                return None
            await asyncio.sleep(0.05)
        return None

    def try_line(self, key: str, tasks: list[str] | None) -> str:
        """A command that triggers a task of this server, to paste in another shell."""
        task = (TRY_TASK if TRY_TASK in tasks else tasks[0]) if tasks else "TASK_ID"
        return (
            f"TRIGGERFISH_API_URL={self.api_url} TRIGGERFISH_SECRET_KEY={key} "
            f"{cli_command()} trigger {task} --payload '{{}}' --wait"
        )

    def banner(self, key: str, tasks: list[str] | None) -> None:
        console.print("[bold green]Triggerfish dev server[/]")
        console.print(f"  API          {self.api_url}")
        console.print(f"  Dashboard    {self.api_url}/")
        console.print(f"  OpenAPI      {self.api_url}/docs")
        console.print(f"  Secret key   {key}  [dim](env: dev)[/]")
        console.print(
            f"  Project ref  {self.project_ref}  [dim](set TRIGGER_PROJECT_REF to choose it)[/]"
        )
        console.print(f"  Tasks from   {', '.join(self.config.dirs)}")
        if tasks is not None:
            console.print(f"  Tasks        {', '.join(tasks) or '(none found)'}")
        else:
            console.print("  Tasks        [yellow]the worker is not serving yet[/]: see its log")
        console.print(f"  Database     {self.state / 'dev.db'}")
        console.print(f"  Worker log   {self.log_dir / 'worker.log'}")
        console.print(
            f"  Try          {self.try_line(key, tasks)}", soft_wrap=True, highlight=False
        )
        console.print(
            f"  TypeScript   TRIGGER_API_URL={self.api_url} TRIGGER_SECRET_KEY={key} "
            "[dim](the official @trigger.dev/sdk)[/]"
        )
        console.print("[dim]Ctrl-C stops everything.[/]")


async def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (finish running attempts), a second one after ``WORKER_GRACE``
    seconds (release them), SIGKILL if it still runs 10 s later."""
    for sig, wait in ((signal.SIGTERM, WORKER_GRACE), (signal.SIGTERM, 10.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, wait)
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)


def cli_command() -> str:
    """How to call this command line from another shell: its name when it is on
    PATH, else the full path of the script beside this Python (a venv not activated)."""
    import shutil

    beside = Path(sys.executable).parent / "triggerfish"
    found = shutil.which("triggerfish")
    if found and (not beside.exists() or Path(found).resolve() == beside.resolve()):
        return "triggerfish"
    return str(beside) if beside.exists() else f"{sys.executable} -m triggerfish.cli.main"


async def run_dev(config: ProjectConfig, host: str, port: int, concurrency: int) -> None:
    session = DevSession(config, host, port, concurrency)
    engine, key = await session.prepare()
    # only `dev` signs the dashboard in by itself (a flag, not "requests from localhost")
    server = make_server(engine, host, port, dashboard_dev=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                return
            await asyncio.sleep(0.05)
        # the banner waits for the worker, so a trigger sent right after it finds the tasks
        since = time.time()
        session.start_worker(key)
        session.banner(key, await session.wait_until_serving(engine, since, stop))
        watching = asyncio.create_task(session.watch(key, stop))
        reporting = asyncio.create_task(session.report_worker_exit(stop))
        broken = asyncio.create_task(session.report_broken_files(stop))
        await asyncio.wait(
            [serving, watching, reporting, broken, asyncio.create_task(stop.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        stop.set()
        console.print("stopping…")
    finally:
        await session.stop_workers()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving
        await engine.close()
