"""The command line: `triggerfish dev` (reload, Ctrl-C), admin commands, inspection commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests import support
from tests.support import Stack

TASK_V1 = """
from triggerfish import task

@task(id="greet")
def greet(payload: dict) -> str:
    return "hello v1"
"""


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        kids = support.children_of(frontier.pop())
        found += kids
        frontier += kids
    return found


def test_dev_serves_reloads_reports_broken_task_files_and_stops_cleanly(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "jobs").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.triggerfish]\ndirs = ["jobs"]\n')
    task_file = project / "jobs" / "greet.py"
    task_file.write_text(TASK_V1)
    # the project ref comes from the project's .env, as Trigger.dev's CLI reads it
    (project / ".env").write_text("TRIGGER_PROJECT_REF=proj_fromdotenvfile\n")
    port = support.free_port()
    out = (tmp_path / "dev.out").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "triggerfish.cli.main", "dev", "--port", str(port)],
        cwd=project,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIGGERFISH_")},
    )
    try:
        banner = support.wait_for(
            lambda: "Ctrl-C stops" in (t := (tmp_path / "dev.out").read_text()) and t,
            timeout=60,
            what="dev banner",
        )
        key = next(w for w in banner.split() if w.startswith("tr_dev_"))
        assert f"http://127.0.0.1:{port}" in banner
        assert "Tasks        greet" in banner
        assert "Project ref  proj_fromdotenvfile" in banner
        assert (project / ".triggerfish" / "dev.db").exists()
        from triggerfish import Triggerfish

        client = Triggerfish(api_url=f"http://127.0.0.1:{port}", secret_key=key)
        # the banner comes once the worker serves: a trigger right after it finds the task
        handle = client.tasks.trigger("greet", {})
        assert client.runs.poll(handle.id, timeout=30, interval=0.05).output == "hello v1"
        # the SDK's project-scoped paths answer to that ref
        scoped = f"http://127.0.0.1:{port}/api/v1/projects/proj_fromdotenvfile/envvars/dev"
        listed = httpx.get(scoped, headers={"Authorization": f"Bearer {key}"})
        assert listed.status_code == 200 and listed.json() == []

        def result() -> object:
            try:
                handle = client.tasks.trigger("greet", {})
            except Exception:
                return None  # the reloaded worker has not registered yet
            return client.runs.poll(handle.id, timeout=30, interval=0.05).output

        # `dev` signs the dashboard in by itself: /runs opens after the sign-in redirect
        runs_page = httpx.get(f"http://127.0.0.1:{port}/runs", follow_redirects=True)
        assert runs_page.status_code == 200
        assert "<h1>Runs</h1>" in runs_page.text
        task_file.write_text("import no_such_module_here\n" + TASK_V1)
        support.wait_for(
            lambda: (
                "No module named 'no_such_module_here'"
                in (tmp_path / "dev.out").read_text().partition("task file not loaded")[2]
            ),
            timeout=60,
            what="dev to report the worker's import error",
        )

        def home() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True, timeout=10).text

        # the dashboard names the file and shows the error's last lines
        support.wait_for(
            lambda: "<code>jobs/greet.py</code>" in home(),
            timeout=30,
            what="the dashboard to show the import error",
        )
        assert "No module named &#39;no_such_module_here&#39;" in home()
        task_file.write_text(TASK_V1.replace("hello v1", "hello v2"))
        support.wait_for(
            lambda: result() == "hello v2",
            timeout=60,
            interval=0.2,
            what="the reloaded task to answer",
        )
        assert "failed to import" not in home()  # the fixed file cleared it
        processes = _descendants(proc.pid)
        assert len(processes) >= 3  # worker + its task processes
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        support.wait_for(
            lambda: not any(support.pid_alive(p) for p in processes),
            timeout=30,
            what="no orphan processes",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


def test_dev_names_a_missing_task_folder(tmp_path: Path) -> None:
    result = support.cli("dev", "--port", str(support.free_port()), cwd=tmp_path)
    assert result.returncode != 0
    assert "tasks" in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize("backend", support.BACKENDS)
def test_server_refuses_an_unmigrated_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
        name = None
    else:
        request.getfixturevalue("pg_template")
        name = f"tf_empty_{os.getpid()}"
        support.pg_execute(f'DROP DATABASE IF EXISTS "{name}"')
        support.pg_execute(f'CREATE DATABASE "{name}"')
        url = support.pg_url(name)
    try:
        env = {"DATABASE_URL": url, "TRIGGERFISH_SERVER_SECRET": support.SERVER_SECRET}
        result = support.cli("server", "--port", str(support.free_port()), env=env, timeout=60)
        assert result.returncode != 0
        assert "triggerfish db migrate" in result.stderr
        migrated = support.cli("db", "migrate", env={"DATABASE_URL": url})
        assert migrated.returncode == 0, migrated.stderr
        assert "up to date" in migrated.stdout
    finally:
        if name:
            support.drop_pg_database(name)


@pytest.mark.parametrize("backend", support.BACKENDS)
def test_keys_create_list_revoke(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    template = request.getfixturevalue("pg_template") if backend == "postgresql" else None
    with support.database(backend, tmp_path, template) as url:
        env = {"DATABASE_URL": url}
        assert support.cli("db", "migrate", env=env).returncode == 0
        created = support.cli("keys", "create", "--env", "prod", "--name", "ci", env=env)
        assert created.returncode == 0, created.stderr
        key = created.stdout.split()[0]
        assert key.startswith("tr_prod_") and len(key) > 30
        key_id = next(w for w in created.stdout.split() if w.startswith("key_"))
        listed = support.cli("keys", "list", env=env)
        assert key_id[:20] in listed.stdout and key not in listed.stdout
        assert "tr_prod_" in listed.stdout  # the prefix is shown, never the key
        assert support.cli("keys", "revoke", key_id, env=env).returncode == 0
        again = support.cli("keys", "revoke", key_id, env=env)
        assert again.returncode != 0 and "no active key" in again.stderr


def test_inspection_commands(shared_stack: Stack) -> None:
    env = {
        "TRIGGERFISH_API_URL": shared_stack.server.url,
        "TRIGGERFISH_SECRET_KEY": shared_stack.key,
        "COLUMNS": "200",
    }
    triggered = support.cli(
        "trigger", "hello", "--payload", '{"who": "cli"}', "--wait", "--tag", "from-cli", env=env
    )
    assert triggered.returncode == 0, triggered.stderr
    assert "COMPLETED" in triggered.stdout and "Hello cli" in triggered.stdout
    run_id = next(w for w in triggered.stdout.split() if w.startswith("run_"))
    listed = support.cli("runs", "list", "--tag", "from-cli", env=env)
    assert run_id in listed.stdout and "COMPLETED" in listed.stdout
    shown = support.cli("runs", "show", run_id, env=env)
    assert "hello" in shown.stdout and "Attempts" in shown.stdout
    logs = support.cli("runs", "logs", run_id, "--follow", env=env)
    assert "greeting" in logs.stdout and "printing to stdout" in logs.stdout
    bad = support.cli("trigger", "hello", "--payload", "{oops", env=env)
    assert bad.returncode != 0 and "--payload is not valid JSON" in bad.stderr
    unknown = support.cli("runs", "show", "run_doesnotexist", env=env)
    assert unknown.returncode != 0 and "not found" in unknown.stderr
    nokey = support.cli(
        "runs",
        "list",
        env={"TRIGGERFISH_API_URL": shared_stack.server.url},
        cwd=Path(os.getcwd()).parent,
    )
    assert nokey.returncode != 0 and "TRIGGERFISH_SECRET_KEY" in nokey.stderr
