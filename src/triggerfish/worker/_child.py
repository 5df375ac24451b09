"""The task process: imports the project's tasks once, then runs attempts sent by the worker.

Started with the ``spawn`` method, so it inherits nothing from the worker but
what it is given. Messages to the worker over the pipe:

- ``("ready", pid)`` / ``("import_error", message)`` once, after importing tasks
- ``("log", record)`` for every captured line while an attempt runs
- ``("call", {"op", "body"})`` for a durable call that must reach the server
  before the task goes on (a journal entry, a wait); the worker answers with
  ``("reply", answer)`` and the task process blocks until then
- ``("metadata", operation)`` for every ``metadata.*`` call, fire-and-forget
  (the worker sends them to the server in batches)
- ``("done", report)`` when the attempt ends (see ``sdk/_runtime.py``)
"""

from __future__ import annotations

import asyncio
import ctypes
import io
import signal
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the worker dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


class _LineWriter(io.TextIOBase):
    """A stdout/stderr replacement that turns each written line into a log record."""

    def __init__(self, conn: Connection, stream: str, level: str) -> None:
        self._conn, self._stream, self._level = conn, stream, level
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._emit(self._pending)
            self._pending = ""

    def _emit(self, line: str) -> None:
        record = {
            "ts": time.time(),
            "level": self._level,
            "message": line,
            "fields": {},
            "stream": self._stream,
        }
        self._conn.send(("log", record))


def _skip_httpx_cli() -> None:
    """Keep httpx's command-line entry point (rich, click, pygments) out of task processes.

    ``import httpx`` loads ``httpx._main`` when those packages are installed;
    a task process never runs it, and it would be a fifth of the process's
    memory. User code that imports rich or click itself still gets them.
    """
    import types

    if "httpx" not in sys.modules:
        stub = types.ModuleType("httpx._main")

        def _no_cli() -> None:
            raise RuntimeError("httpx's command line is not available in a task process")

        stub.main = _no_cli  # type: ignore[attr-defined]
        sys.modules.setdefault("httpx._main", stub)


def main(conn: Connection, root: str, dirs: list[str]) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    _skip_httpx_cli()
    from triggerfish.sdk import _logger, _metadata
    from triggerfish.sdk._runtime import run_attempt
    from triggerfish.worker.discovery import ProjectConfig, load_registry

    try:
        registry = load_registry(ProjectConfig(root=Path(root), dirs=dirs))
    except Exception as exc:
        conn.send(("import_error", str(exc)))
        return
    conn.send(("ready", __import__("os").getpid()))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _logger.set_sink(lambda record: conn.send(("log", record)))
    real_out, real_err = sys.stdout, sys.stderr
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message[0] != "run":
            return
        job: dict[str, Any] = message[1]
        _metadata.bind(lambda op: conn.send(("metadata", op)), job.get("metadata"))
        out, err = _LineWriter(conn, "stdout", "INFO"), _LineWriter(conn, "stderr", "ERROR")
        sys.stdout, sys.stderr = out, err
        try:
            report = run_attempt(registry, job, loop, _transport(conn))
        finally:
            out.flush()
            err.flush()
            sys.stdout, sys.stderr = real_out, real_err
            _metadata.bind(None)
        conn.send(("done", report))


def _transport(conn: Connection) -> Any:
    """Durable calls: send the request, block until the worker's reply arrives."""

    def call(op: str, body: dict[str, Any]) -> dict[str, Any]:
        conn.send(("call", {"op": op, "body": body}))
        while True:
            kind, value = conn.recv()
            if kind == "reply":
                return dict(value)
            if kind == "stop":
                raise SystemExit(0)

    return call
