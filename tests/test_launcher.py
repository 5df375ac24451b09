"""``tests/support/launcher.py``: a command forked from the warm process behaves as
the fresh ``python -m triggerfish.cli.main`` it replaces (output, exit status,
signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests import support
from tests.support.launcher import launch


def _fresh(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triggerfish.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_refused_start_says_and_exits_as_a_fresh_process_does(tmp_path: Path) -> None:
    """Only the environment given counts: the test process's own is not inherited."""
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    log = tmp_path / "server.log"
    launched = launch(["server", "--port", "0"], env=env, log=log, cwd=tmp_path)
    fresh = _fresh(["server", "--port", "0"], env, tmp_path)
    assert launched.wait(60) == fresh.returncode != 0
    assert "TRIGGERFISH_SERVER_SECRET" in log.read_text()
    assert "TRIGGERFISH_SERVER_SECRET" in fresh.stderr


def test_wait_poll_and_signals_behave_as_popen_s(tmp_path: Path) -> None:
    url = support.new_sqlite_database(tmp_path / "store.db")
    server = support.start_server(url, tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        server.proc.wait(0.1)
    assert server.proc.poll() is None
    server.proc.send_signal(signal.SIGTERM)  # a clean stop
    assert server.proc.wait(15) == 0
    again = support.start_server(url, tmp_path)
    again.proc.kill()
    assert again.proc.wait(15) == -signal.SIGKILL
    assert again.proc.poll() == again.proc.returncode == -signal.SIGKILL
