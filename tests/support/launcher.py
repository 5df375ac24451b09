"""``triggerfish`` commands for the tests, forked from a process that imported them once.

A ``triggerfish server`` or ``worker`` started as a fresh interpreter spends
about 1.6 s (server) or 1 s (worker) of CPU importing before it does anything;
the suite starts well over a hundred of them on two cores. Each test process
instead keeps one :mod:`multiprocessing` forkserver that has imported the CLI,
the server and the worker, and forks every command from it: the same
``triggerfish`` entry point with its argv, a clean environment, a working
folder and a log file, as its own process (and its own session, when asked).

:func:`launch` answers a :class:`Launched`, which behaves as the
:class:`subprocess.Popen` the tests used before (``pid``, ``poll``, ``wait``,
``send_signal``, ``terminate``, ``kill``, ``returncode``); :func:`run` the
``subprocess.run`` of a short command with its output captured.
"""

from __future__ import annotations

import atexit
import functools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

#: what the forkserver imports once: everything ``server`` and ``worker`` load
PRELOAD = [
    "triggerfish.cli.main",
    "triggerfish.cli.processes",
    "triggerfish.cli._serve",
    "triggerfish.api.app",
    "triggerfish.engine",
    "triggerfish.config",
    "triggerfish.worker.supervisor",
    "tests.support.launcher",  # this module: the forked side's code, loaded once
]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)
_running: set[Launched] = set()


class Launched:
    """A forked ``triggerfish`` command, with :class:`subprocess.Popen`'s methods."""

    def __init__(self, process: BaseProcess, args: list[str]) -> None:
        self._process = process
        self.args = args
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._process.exitcode
            if self.returncode is not None:
                _running.discard(self)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def launch(
    args: Sequence[str],
    *,
    env: dict[str, str],
    log: Path,
    errors: Path | None = None,
    cwd: Path | None = None,
    new_session: bool = False,
) -> Launched:
    """Start ``triggerfish *args`` with exactly ``env``, its output in ``log`` and
    its error output in ``errors`` (default: ``log`` too), both emptied first."""
    errors = errors or log
    for file in {log, errors}:
        file.write_bytes(b"")
    folder = str(cwd or Path.cwd())
    _forget_terminal_size()
    process = _context.Process(
        target=_command,
        args=(
            list(args),
            dict(env),
            (str(log), str(errors)),
            folder,
            _path(folder, env),
            new_session,
        ),
        name=f"triggerfish {' '.join(args[:1])}",
    )
    process.start()
    launched = Launched(process, ["triggerfish", *args])
    _running.add(launched)
    return launched


@functools.cache
def _forget_terminal_size() -> None:
    """Before the forkserver starts (it inherits this process's C environment):
    readline, once loaded, puts ``COLUMNS``/``LINES`` of the terminal there,
    and the CLI's consoles, made as the forkserver imports them, would keep
    that width whatever ``COLUMNS`` a command is launched with."""
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
        os.unsetenv(name)


def _path(folder: str, env: dict[str, str]) -> list[str]:
    """``sys.path`` as ``python -m`` in ``folder`` with ``env`` would have it."""
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [folder, *extra, *_fresh_path()]


@functools.cache
def _fresh_path() -> list[str]:
    """``sys.path`` of a fresh interpreter, after its first entry (the folder
    ``python -m`` runs in): not the test process's, which tests may have added
    project folders to (a project's ``tasks`` package would shadow another's)."""
    shown = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    return list(json.loads(shown.stdout))


def run(
    args: Sequence[str], *, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` of ``triggerfish *args`` with captured text output, launched."""
    with tempfile.TemporaryDirectory(prefix="tf-command-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        command = launch(args, env=env, log=out, errors=err, cwd=cwd)
        try:
            code = command.wait(timeout)
        except subprocess.TimeoutExpired:
            command.kill()
            command.wait()
            raise
        return subprocess.CompletedProcess(command.args, code, out.read_text(), err.read_text())


def _command(
    args: list[str],
    env: dict[str, str],
    logs: tuple[str, str],
    cwd: str,
    path: list[str],
    new_session: bool,
) -> None:
    """In the forked process: become ``triggerfish *args`` and run it."""
    if new_session:
        os.setsid()
    for target, log in zip((1, 2), logs, strict=True):
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[:] = path
    sys.argv = ["triggerfish", *args]
    # a worker starts its task processes with multiprocessing: allowed in a child
    multiprocessing.current_process().daemon = False

    from triggerfish.cli.main import app

    try:
        app(args=args, prog_name="triggerfish")
    finally:
        atexit._run_exitfuncs()  # a forked child ends with os._exit: flush what waits


@atexit.register
def _stop_leftovers() -> None:
    """Kill what a failed test left running, before multiprocessing waits for it."""
    for launched in list(_running):
        launched.kill()
        launched.wait(10)
