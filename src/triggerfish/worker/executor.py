"""A pool of warm, isolated task processes: one attempt at a time per process.

Each slot owns one child process (``_child.py``) that has imported the
project's tasks. An attempt is sent to a free slot; the parent reads the
child's messages without blocking its event loop, enforces ``max_duration``
and the machine's memory limit (by watching the child's RSS), and stops the
child on cancel. A child that dies or is killed is replaced by a fresh one in
the background, so the pool keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import select
import signal
import sys
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from triggerfish._domain.attempts import AttemptOutcome, DirectLink, ErrorInfo, Failed, Job
from triggerfish._domain.machines import MACHINE_MEMORY_MB
from triggerfish._domain.states import FailureKind
from triggerfish.worker import _child
from triggerfish.worker._pipe import pack_job, pack_link, unpack_outcome
from triggerfish.worker.discovery import ProjectConfig

LogCallback = Callable[[str, dict[str, Any]], None]
#: relays a task process's durable call ``(job, op, body)`` to the server
CallCallback = Callable[[Job, str, dict[str, Any]], Awaitable[dict[str, Any]]]
_ctx = multiprocessing.get_context("spawn")
START_TIMEOUT = 60.0
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


#: processes one attempt is handed to at most when each dies before starting it
MAX_HANDOFFS = 3


class ChildStartError(RuntimeError):
    pass


def _failure(kind: FailureKind, name: str, message: str) -> Failed:
    """The outcome of an attempt the worker had to stop (its process has no say)."""
    return Failed(ErrorInfo(name=name, message=message, stack_trace="", kind=kind))


@dataclass
class _Slot:
    process: BaseProcess
    conn: Connection
    #: messages ``run`` waits on (and any that arrive while no attempt runs)
    inbox: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    job: Job | None = None
    #: why the worker stopped the attempt running here: its outcome, whatever the process says
    stop_reason: Failed | None = None
    #: a readiness check of ``conn`` in one system call (``Connection.poll``
    #: builds a selector for every call)
    readable: Any = field(default_factory=select.poll)
    #: a new process was asked for in its place (it died, or was stopped)
    replaced: bool = False
    #: the link for its own journal writes the running attempt was last given
    told: DirectLink | None = None

    def __post_init__(self) -> None:
        self.readable.register(self.conn.fileno(), select.POLLIN)


class ExecutorPool:
    def __init__(
        self,
        config: ProjectConfig,
        size: int,
        on_log: LogCallback,
        *,
        on_call: CallCallback | None = None,
        on_metadata: LogCallback | None = None,
        on_span: LogCallback | None = None,
        env: dict[str, str] | None = None,
        memory_poll_interval: float = 0.05,
        max_durations: Mapping[str, float | None] | None = None,
        direct_link: Callable[[], DirectLink | None] | None = None,
    ) -> None:
        self.config = config
        #: the worker's link for task processes' own journal writes now
        #: (``_direct.py``); None: each attempt keeps the one its job names
        self.direct_link = direct_link
        #: each task's declared limit, for runs that set none of their own
        self.max_durations = max_durations or {}
        self.size = size
        self.on_log = on_log
        self.on_call = on_call
        self.on_metadata = on_metadata
        self.on_span = on_span
        self.env = env
        self.memory_poll_interval = memory_poll_interval
        self._free: asyncio.Queue[_Slot] = asyncio.Queue()
        self._slots: list[_Slot] = []
        self._respawns: set[asyncio.Task[None]] = set()
        self._memory_timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def child_pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process.pid is not None]

    async def start(self) -> None:
        slots = await asyncio.gather(*(self._spawn() for _ in range(self.size)))
        for slot in slots:
            self._free.put_nowait(slot)

    async def _spawn(self) -> _Slot:
        parent_conn, child_conn = _ctx.Pipe()
        process = _ctx.Process(
            target=_child.main,
            args=(
                child_conn,
                str(self.config.root),
                list(self.config.dirs),
                self.config.skip_broken,
            ),
            daemon=True,
        )
        with _environment(self.env), _bare_main_module():
            process.start()
        child_conn.close()
        slot = _Slot(process, parent_conn)
        self._slots.append(slot)
        loop = asyncio.get_running_loop()
        loop.add_reader(parent_conn.fileno(), self._drain, slot)
        try:
            kind, value = await asyncio.wait_for(slot.inbox.get(), START_TIMEOUT)
        except TimeoutError:
            kind, value = "import_error", f"task process did not start in {START_TIMEOUT:g}s"
        if kind != "ready":
            await self._discard(slot)
            raise ChildStartError(f"task process could not load the tasks: {value}")
        return slot

    def _drain(self, slot: _Slot) -> None:
        """Reader callback: handle every available message of the child.

        Logs and metadata of the running attempt are passed on here, in
        order, without waking ``run``; the rest goes to the inbox.
        """
        try:
            while slot.readable.poll(0):
                message = _child.recv(slot.conn)
                job = slot.job
                if job is None or not self._pass_on(job, message):
                    slot.inbox.put_nowait(message)
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())
            slot.inbox.put_nowait(("dead", None))
            if slot.job is None and not self._closed:
                # died idle (killed, OOM-killed): replace it before it is given work
                self._replace(slot)

    def _pass_on_strays(self, slot: _Slot, job: Job) -> None:
        """Lines a task's thread wrote between attempts go to the next attempt, first."""
        kept: list[tuple[str, Any]] = []
        while not slot.inbox.empty():
            message = slot.inbox.get_nowait()
            if not self._pass_on(job, message):
                kept.append(message)
        for message in kept:
            slot.inbox.put_nowait(message)

    def _pass_on(self, job: Job, message: tuple[str, Any]) -> bool:
        kind, value = message
        if kind == "log":
            self.on_log(job.attempt_id, value)
        elif kind == "metadata":
            if self.on_metadata is not None:
                self.on_metadata(job.attempt_id, value)
        elif kind == "span":
            if self.on_span is not None:
                self.on_span(job.attempt_id, value)
        else:
            return False
        return True

    async def run(self, job: Job) -> AttemptOutcome:
        """Run one attempt on a warm process and return how it ended (never raises).

        A process found dead when the attempt is handed to it, or that dies
        before it says the attempt started (before any user code ran), is
        replaced and the attempt handed to the next one: that costs the
        attempt nothing.
        """
        handoffs = 0
        while True:
            handoffs += 1
            slot = await self._hand_off(job)
            deadline = self._arm_deadline(slot, job)
            self._watch_memory()
            started: list[bool] = []
            try:
                outcome = await self._await_outcome(slot, job, started)
            finally:
                if deadline is not None:
                    deadline.cancel()
                slot.job = None
            if outcome is None:  # the process died
                self._replace(slot)
                if not started and slot.stop_reason is None and handoffs < MAX_HANDOFFS:
                    continue
                return slot.stop_reason or self._death_report(slot)
            if slot.stop_reason is not None:
                # stopped just as its outcome arrived: the outcome stands, the process goes
                self._replace(slot)
                return outcome
            self._free.put_nowait(slot)
            return outcome

    async def _hand_off(self, job: Job) -> _Slot:
        """A live process that has been sent ``job``."""
        while True:
            slot = await self._free.get()
            if slot.replaced:
                continue  # died idle: its replacement is (or will be) in the queue
            if not slot.process.is_alive():
                self._replace(slot)
                continue
            slot.job, slot.stop_reason = job, None
            if not slot.inbox.empty():
                self._pass_on_strays(slot, job)
            try:
                _child.send(slot.conn, ("run", pack_job(job)))
            except OSError:  # it died as the job was sent: no user code ran
                slot.job = None
                self._replace(slot)
                continue
            slot.told = job.direct
            self._tell_link(slot)  # claimed before the worker last moved
            return slot

    def follow_server(self) -> None:
        """The worker moved to another server: so do the running attempts' own
        journal writes (``_direct.py``), including one waiting on the old server."""
        for slot in self._slots:
            if slot.job is not None:
                self._tell_link(slot)

    def _tell_link(self, slot: _Slot) -> None:
        if self.direct_link is None:
            return
        link = self.direct_link()
        if link != slot.told:
            slot.told = link
            with contextlib.suppress(OSError):  # died: its attempt ends without it
                _child.send(slot.conn, ("link", pack_link(link)))

    async def _await_outcome(
        self, slot: _Slot, job: Job, started: list[bool]
    ) -> AttemptOutcome | None:
        """The attempt's outcome, relaying its calls meanwhile; None if the process
        died. ``started`` gets an item once the process says user code starts."""
        while True:
            kind, value = await slot.inbox.get()
            if kind == "started":
                started.append(True)
            elif kind == "log":
                self.on_log(job.attempt_id, value)
            elif kind == "metadata":
                if self.on_metadata is not None:
                    self.on_metadata(job.attempt_id, value)
            elif kind == "span":
                if self.on_span is not None:
                    self.on_span(job.attempt_id, value)
            elif kind == "call":
                answer = await self._relay(job, value)
                self._tell_link(slot)  # the relay may have moved the worker
                with contextlib.suppress(OSError):
                    _child.send(slot.conn, ("reply", answer))
            elif kind == "done":
                return unpack_outcome(value)
            elif kind == "dead":
                return None

    async def _relay(self, job: Job, request: dict[str, Any]) -> dict[str, Any]:
        if self.on_call is None:
            return {"_status": 503, "error": "this worker relays no durable calls"}
        return await self.on_call(job, str(request["op"]), dict(request["body"]))

    def _arm_deadline(self, slot: _Slot, job: Job) -> asyncio.TimerHandle | None:
        """Stop the child when the attempt runs longer than its ``max_duration``."""
        limit = job.max_duration or self.max_durations.get(job.task_id)
        if not limit:
            return None
        failure = _failure(
            "TIMEOUT",
            "MaxDurationExceededError",
            f"the attempt ran longer than max_duration={limit:g}s and was "
            "stopped; raise max_duration or split the work into smaller tasks",
        )
        return asyncio.get_running_loop().call_later(limit, self._kill, slot, failure)

    def _watch_memory(self) -> None:
        """Check the RSS of busy children every interval while any attempt runs.

        One timer serves the whole pool and stops when the pool is idle, so an
        attempt costs no task of its own and an idle worker does not wake up.
        """
        if self._memory_timer is None:
            self._memory_timer = asyncio.get_running_loop().call_later(
                self.memory_poll_interval, self._check_memory
            )

    def _check_memory(self) -> None:
        self._memory_timer = None
        busy = [(slot, slot.job) for slot in self._slots if slot.job is not None]
        for slot, job in busy:
            limit_mb = MACHINE_MEMORY_MB.get(job.machine)
            if limit_mb is None:
                continue
            rss = _rss_mb(slot.process.pid)
            if rss is not None and rss > limit_mb:
                self._kill(
                    slot,
                    _failure(
                        "OOM",
                        "OutOfMemoryError",
                        f"task exceeded the memory limit of machine {job.machine!r} "
                        f"({limit_mb} MiB, it used {rss:.0f} MiB); choose a larger machine "
                        "with machine=... on the task or the trigger",
                    ),
                )
        if busy and not self._closed:
            self._watch_memory()

    async def cancel(self, attempt_id: str) -> bool:
        """Stop the process running ``attempt_id``; its ``run`` reports CANCELED."""
        for slot in self._slots:
            if slot.job is not None and slot.job.attempt_id == attempt_id:
                self._kill(slot, _failure("CANCELED", "RunCanceled", "the run was canceled"))
                return True
        return False

    def _kill(self, slot: _Slot, reason: Failed) -> None:
        if slot.stop_reason is None:
            slot.stop_reason = reason
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(slot.process.pid, signal.SIGKILL)  # type: ignore[arg-type]

    def _death_report(self, slot: _Slot) -> Failed:
        slot.process.join(timeout=5)
        code = slot.process.exitcode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            how = f"died with signal {name} (exit code {code})"
        else:
            how = f"exited with code {code}"
        return _failure(
            "CRASH",
            "TaskProcessCrashed",
            f"the task process {how} while running the attempt (a crash in native code, "
            "os._exit or os.abort); the worker is unaffected",
        )

    def _replace(self, slot: _Slot) -> None:
        if slot.replaced:
            return
        slot.replaced = True

        async def respawn() -> None:
            await self._discard(slot)
            if self._closed:
                return
            try:
                self._free.put_nowait(await self._spawn())
            except ChildStartError:
                # task files broke since start: keep the slot count, retry later
                await asyncio.sleep(1)
                if not self._closed:
                    slot.replaced = False
                    self._replace(slot)

        task = asyncio.create_task(respawn())
        self._respawns.add(task)
        task.add_done_callback(self._respawns.discard)

    async def _discard(self, slot: _Slot) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(slot.conn.fileno())
        if slot.process.is_alive():
            slot.process.kill()
        await asyncio.to_thread(slot.process.join, 5)
        slot.conn.close()
        if slot in self._slots:
            self._slots.remove(slot)

    async def close(self, timeout: float = 5.0) -> None:
        """Stop every task process; none outlives the pool."""
        self._closed = True
        if self._memory_timer is not None:
            self._memory_timer.cancel()
            self._memory_timer = None
        for task in list(self._respawns):
            task.cancel()
        for slot in list(self._slots):
            with contextlib.suppress(OSError):
                _child.send(slot.conn, ("stop", None))
        for slot in list(self._slots):
            await asyncio.to_thread(slot.process.join, timeout)
            await self._discard(slot)


def _rss_mb(pid: int | None) -> float | None:
    """Resident memory of ``pid`` (``VmRSS``), read from the one-line ``statm``."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * _PAGE_SIZE / (1024 * 1024)


@contextlib.contextmanager
def _bare_main_module() -> Any:
    """Start a child without re-importing the worker's ``__main__`` in it.

    ``spawn`` imports the parent's main module in every child (in case the
    target refers to it); the worker's is the command line, which would load
    the server, the store and the web stack into every task process for
    nothing (about half of its memory). The target, ``_child.main``, lives in
    a module of its own, so the child needs no ``__main__`` of ours.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


@contextlib.contextmanager
def _environment(env: dict[str, str] | None) -> Any:
    """Spawned children copy ``os.environ`` at start: swap it in for the start only."""
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
