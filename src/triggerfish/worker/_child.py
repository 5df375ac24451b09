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
- ``("span", span)`` for every span task code ends during an attempt,
  fire-and-forget (the worker sends them to the server's span store in batches;
  ``sdk/_tracing.py``)
- ``("started", None)`` when it has the job, before user code runs (a process
  that dies before sending it is replaced and the job handed to the next one)
- ``("done", outcome)`` when the attempt ends (an ``AttemptOutcome``, see
  ``sdk/_runtime.py``)

The worker sends ``("run", job)`` (a ``Job``) to start an attempt,
``("link", link)`` when the server for the process's own journal writes
changes (the worker moved to another server, ``_direct.py``) and
``("stop", None)`` to end the process. Jobs and outcomes, the frozen
dataclasses of ``_domain/attempts.py``, cross as plain tuples (``_pipe.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triggerfish.worker._direct import DirectJournal
from triggerfish.worker._pipe import pack_outcome, unpack_job, unpack_link

if TYPE_CHECKING:
    from triggerfish._domain.attempts import AttemptOutcome, Job
    from triggerfish.sdk._registry import TaskRegistry

_PR_SET_PDEATHSIG = 1


def send(conn: Connection, message: tuple[str, Any]) -> None:
    """Send one message; both ends carry only plain data, so plain pickle will do.

    ``Connection.send`` builds a ``ForkingPickler`` (copying the reducer
    table) for every message, which costs more than pickling a small dict.
    """
    conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def recv(conn: Connection) -> Any:
    """Receive one message sent by :func:`send`; ``EOFError`` once the other end is gone."""
    return pickle.loads(conn.recv_bytes())


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
        send(self._conn, ("log", record))


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


def main(conn: Connection, root: str, dirs: list[str], skip_broken: bool = False) -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    _skip_httpx_cli()
    from triggerfish import _otel
    from triggerfish.sdk import _logger

    # the task's spans: OTEL_EXPORTER_OTLP_* reach the task process (the otel extra)
    service = os.environ.get("OTEL_SERVICE_NAME") or "triggerfish-task"
    _otel.configure(service)
    from triggerfish.worker.discovery import ProjectConfig, load_registry

    try:
        config = replace(ProjectConfig.load(Path(root), dirs), skip_broken=skip_broken)
        registry = load_registry(config)
    except Exception as exc:
        send(conn, ("import_error", str(exc)))
        return
    _logger.set_sink(lambda record: send(conn, ("log", record)))
    # after the tasks' imports: a provider the project installs keeps its place
    from triggerfish.sdk import _tracing

    _tracing.collect_into(lambda span: send(conn, ("span", span)), service)
    _logger.set_level(config.log_level)
    attempts = _Attempts(conn, registry)
    from triggerfish._heap import settle_after_startup

    settle_after_startup()
    send(conn, ("ready", os.getpid()))
    while True:
        try:
            message = recv(conn)
        except EOFError:
            return
        if message[0] == "link":  # the next job names its own
            continue
        if message[0] != "run":
            return
        # before any user code: a process that dies before this costs the attempt nothing
        send(conn, ("started", None))
        outcome = attempts.run(unpack_job(message[1]))
        send(conn, ("done", pack_outcome(outcome)))


class _Attempts:
    """What every attempt of this process shares, made once: loop, writers, sinks."""

    def __init__(self, conn: Connection, registry: TaskRegistry) -> None:
        # imported here, not at module level: after _skip_httpx_cli has run
        from triggerfish.sdk import _client, _metadata
        from triggerfish.sdk._runtime import run_attempt

        self.registry, self.run_attempt, self.bind = registry, run_attempt, _metadata.bind
        self.client = _client
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.real_out, self.real_err = sys.stdout, sys.stderr
        self.out = _LineWriter(conn, "stdout", "INFO")
        self.err = _LineWriter(conn, "stderr", "ERROR")
        self.on_metadata: Callable[[dict[str, Any]], None] = lambda op: send(conn, ("metadata", op))
        self.direct = DirectJournal()
        self.transport = _transport(conn, self.direct)

    def run(self, job: Job) -> AttemptOutcome:
        self.bind(self.on_metadata, job.metadata)
        self.direct.bind(job)
        self.client.bind_attempt(job.api_url, job.credential)
        sys.stdout, sys.stderr = self.out, self.err
        restore = _set_attempt_environment(job.env_vars)
        try:
            return self.run_attempt(self.registry, job, self.loop, self.transport)
        finally:
            _restore_environment(restore)
            self.out.flush()
            self.err.flush()
            sys.stdout, sys.stderr = self.real_out, self.real_err
            self.bind(None)
            self._close_attempt_client()

    def _close_attempt_client(self) -> None:
        """The attempt's client dies with it (its credential is no longer honoured)."""
        client = self.client.unbind_attempt()
        if client is not None:
            with contextlib.suppress(Exception):  # the server may already be gone
                client.close()
                self.loop.run_until_complete(client.aclose())


def _set_attempt_environment(env_vars: tuple[tuple[str, str], ...]) -> dict[str, str | None]:
    """Set the environment's variables for one attempt; what they replaced, to restore.

    The worker already left out what task processes never get (the strip list
    of ``_redact.py``, applied in ``api_client.py``: that module stays out of
    task processes, whose memory must hold no key shape at all).
    """
    saved = {name: os.environ.get(name) for name, _ in env_vars}
    os.environ.update(env_vars)
    return saved


def _restore_environment(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _transport(conn: Connection, direct: DirectJournal) -> Any:
    """Durable calls: send the request, block until the worker's reply arrives.

    Journal writes go to the server over this process's own socket when they
    can (``_direct.py``); the worker relays whatever that leaves.
    """

    def handle(kind: str, value: Any) -> None:
        if kind == "link":
            direct.follow(unpack_link(value))
        elif kind == "stop":
            raise SystemExit(0)

    # one system call per look (``Connection.poll`` builds a selector every time)
    readable = select.poll()
    readable.register(conn.fileno(), select.POLLIN)

    def read_news() -> None:
        """The worker's messages that arrived while the task ran (no reply is due)."""
        while readable.poll(0):
            handle(*recv(conn))

    direct.watch = read_news

    def call(op: str, body: dict[str, Any]) -> dict[str, Any]:
        if op == "journal":
            read_news()
            answer = direct.write(body)
            if answer is not None:
                return answer
        send(conn, ("call", {"op": op, "body": body}))
        while True:
            kind, value = recv(conn)
            if kind == "reply":
                return dict(value)
            handle(kind, value)

    return call
