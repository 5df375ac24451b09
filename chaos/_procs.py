"""Child processes the suite starts: each in its own process group, killed with it.

Every process started here is registered; :func:`kill_all` (called from the
suite's ``finally`` and from ``atexit``) SIGKILLs every registered group that
is still there, so nothing outlives a run, whatever ends it. The children also
get ``PR_SET_PDEATHSIG`` (Linux): if the suite itself is SIGKILLed, the kernel
kills them. Start them from the main thread (the signal follows the thread
that started the child).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
#: process group ids of the children still to be killed, newest last
_groups: list[int] = []
#: where the ids are also written, for a wrapper script to clean up after us
GROUPS_FILE_ENV = "CHAOS_PGID_FILE"


class ChaosError(RuntimeError):
    """The suite could not set up or drive its cluster (not a reliability finding)."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: Sequence[str],
    log: Path,
    env: dict[str, str],
    *,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (its own process group), output to ``log``."""
    proc = subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        preexec_fn=_die_with_parent,
    )
    _groups.append(proc.pid)
    groups_file = os.environ.get(GROUPS_FILE_ENV)
    if groups_file:
        with open(groups_file, "a") as fh:
            fh.write(f"{proc.pid}\n")
    return proc


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``'s whole process group and reap ``proc``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


def stop_group(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15
) -> None:
    """Send ``sig`` to the group, wait up to ``timeout`` s, then SIGKILL what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    kill_group(proc)


def kill_all() -> None:
    """SIGKILL every process group this module started (idempotent)."""
    while _groups:
        pgid = _groups.pop()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    groups_file = os.environ.get(GROUPS_FILE_ENV)
    if groups_file:  # nothing left for the wrapper to clean up (and no stale ids)
        with contextlib.suppress(OSError):
            open(groups_file, "w").close()


atexit.register(kill_all)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``cond`` until it returns something truthy, or raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return sorted(kids)


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without Triggerfish or database settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIGGERFISH_", "TRIGGER_"))}
    env.pop("DATABASE_URL", None)
    env.update(extra or {})
    return env
