"""`triggerfish dev` never loses work (issue 20, part 4): a save starts a new worker
for new runs while the old one finishes its running attempts on the old code, and a
task file that fails to import disables only its own tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests import support
from triggerfish import Triggerfish

LONG = """
import pathlib, time
from triggerfish import task

RELEASE = pathlib.Path(__file__).resolve().parent.parent / "release"


@task(id="long")
def long(payload: dict) -> str:
    while not RELEASE.exists():  # the test says when this run may end
        time.sleep(0.02)
    return "finished on v1"
"""

GREET = """
from triggerfish import task


@task(id="greet")
def greet(payload: dict) -> str:
    return "hello VERSION"
"""


def test_a_save_neither_interrupts_running_attempts_nor_a_broken_file_the_rest(
    tmp_path: Path,
) -> None:
    project = tmp_path / "proj"
    (project / "tasks").mkdir(parents=True)
    (project / "tasks" / "long.py").write_text(LONG)
    (project / "tasks" / "greet.py").write_text(GREET.replace("VERSION", "v1"))
    port = support.free_port()
    out_path = tmp_path / "dev.out"
    out = out_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "triggerfish.cli.main", "dev", "--port", str(port)],
        cwd=project,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIGGERFISH_")},
    )
    try:
        banner = support.wait_for(
            lambda: "Ctrl-C stops" in (t := out_path.read_text()) and t,
            timeout=60,
            what="dev banner",
        )
        key = next(w for w in banner.split() if w.startswith("tr_dev_"))
        client = Triggerfish(api_url=f"http://127.0.0.1:{port}", secret_key=key)
        running = client.tasks.trigger("long", {}).id
        support.wait_for(
            lambda: client.runs.retrieve(running).status == "EXECUTING",
            timeout=30,
            what="the long run to start",
        )

        # a save: new code for greet, and a new file that fails to import
        (project / "tasks" / "greet.py").write_text(GREET.replace("VERSION", "v2"))
        (project / "tasks" / "broken.py").write_text("import no_such_module_here\n")

        def greeting() -> object:
            try:
                handle = client.tasks.trigger("greet", {})
                return client.runs.poll(handle.id, timeout=30, interval=0.05).output
            except Exception:
                return None

        support.wait_for(
            lambda: greeting() == "hello v2", timeout=60, interval=0.2, what="the new code"
        )
        support.wait_for(
            lambda: "no_such_module_here" in out_path.read_text().partition("not loaded")[2],
            timeout=30,
            what="the broken file in the console",
        )
        # the long run still runs its first attempt, on the old worker
        run = client.runs.retrieve(running)
        assert (run.status, run.attempt_count) == ("EXECUTING", 1)
        (project / "release").touch()
        done = client.runs.poll(running, timeout=30, interval=0.05)
        assert (done.status, done.output, done.attempt_count) == (
            "COMPLETED",
            "finished on v1",
            1,
        )
        client.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
