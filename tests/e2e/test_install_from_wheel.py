"""From a built wheel to a run triggered by a FastAPI app (issue 20, part 5).

Builds the wheel and sdist, installs the wheel into a fresh venv from a local
wheelhouse (the dependencies as pinned by the test's own venv, downloaded once
and kept in ~/.cache), runs `triggerfish init` in an empty FastAPI project,
starts `triggerfish dev`, and triggers the example task from the app's route,
and checks that /docs loads swagger-ui from the installed packages.

In the default suite: about 35 s of CPU in all (the build ~3 s, the install
~8 s without byte-compiling, the rest `init`, `dev` and the app starting). The
first run on a machine also downloads the wheelhouse (pip's cache, which the
test venv's own install filled, answers most of it).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import httpx
import pytest

from tests import support
from triggerfish import Triggerfish

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE_CACHE = Path.home() / ".cache" / "triggerfish-tests"

pytestmark = [pytest.mark.timeout(600)]


def _run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=support._env({}),
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build(out: Path) -> tuple[Path, Path]:
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    [wheel] = out.glob("triggerfish-*.whl")
    [sdist] = out.glob("triggerfish-*.tar.gz")
    return wheel, sdist


def _wheelhouse(wheel: Path) -> Path:
    """The wheel's dependencies, at the versions this venv runs, downloaded once."""
    pins = _run(sys.executable, "-m", "pip", "freeze", "--exclude-editable")
    pins = "\n".join(p for p in pins.splitlines() if not p.lower().startswith("triggerfish"))
    house = WHEELHOUSE_CACHE / ("wheelhouse-" + hashlib.sha256(pins.encode()).hexdigest()[:12])
    if not (house / ".complete").exists():
        house.mkdir(parents=True, exist_ok=True)
        constraints = house / "constraints.txt"
        constraints.write_text(pins + "\n")
        _run(
            sys.executable, "-m", "pip", "download", "-q", "--dest", house, "-c", constraints, wheel
        )
        (house / ".complete").touch()
    return house


def test_the_wheel_installs_inits_a_fastapi_project_and_runs_its_example(
    tmp_path: Path,
) -> None:
    wheel, sdist = _build(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "triggerfish/py.typed",
        "triggerfish/store/migrations/env.py",
        "triggerfish/dashboard/templates/home.html",
        "triggerfish/cli/init.py",
    ):
        assert needed in names, needed
    assert any("/versions/0001_" in n for n in names)
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert any(m.endswith("src/triggerfish/cli/init.py") for m in members)
    assert any(m.endswith("README.md") for m in members)

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    house = _wheelhouse(wheel)
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        # no .pyc files written ahead: the few modules the test imports compile on use
        "--no-compile",
        "--no-index",
        "--find-links",
        house,
        wheel,
    )

    project = tmp_path / "shop"
    project.mkdir()
    (project / "main.py").write_text("from fastapi import FastAPI\n\napp = FastAPI()\n")
    port, app_port = support.free_port(), support.free_port()
    bin_dir = venv / "bin"
    _run(bin_dir / "triggerfish", "init", "--api-url", f"http://127.0.0.1:{port}", cwd=project)

    log = (tmp_path / "dev.out").open("wb")
    dev = subprocess.Popen(
        [bin_dir / "triggerfish", "dev", "--port", str(port)],
        cwd=project,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=support._env({}),
    )
    app = subprocess.Popen(
        [bin_dir / "uvicorn", "main:app", "--env-file", ".env", "--port", str(app_port)],
        cwd=project,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=support._env({}),
    )
    try:
        support.wait_for(
            lambda: "Ctrl-C stops" in (tmp_path / "dev.out").read_text(),
            timeout=120,
            what="the dev server",
        )

        def triggered() -> str | None:
            try:
                r = httpx.post(f"http://127.0.0.1:{app_port}/hello/Ada", timeout=10)
            except httpx.TransportError:
                return None  # the app is still starting
            assert r.status_code == 200, r.text
            return str(r.json()["run_id"])

        run_id = support.wait_for(triggered, timeout=60, what="the app's route")
        env = dict(
            line.split("=", 1)
            for line in (project / ".env").read_text().splitlines()
            if line and not line.startswith("#")
        )
        # the OpenAPI page's swagger-ui comes from the installed dependency, not a checkout
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=10)
        assert docs.status_code == 200, docs.text
        bundle = httpx.get(f"http://127.0.0.1:{port}/static/swagger-ui/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.content
        client = Triggerfish(env["TRIGGERFISH_API_URL"], env["TRIGGERFISH_SECRET_KEY"])
        run = client.runs.poll(run_id, timeout=60)
        client.close()
        assert (run.status, run.output) == ("COMPLETED", {"message": "Hello Ada"})
    finally:
        app.terminate()
        dev.send_signal(signal.SIGINT)
        for proc in (app, dev):
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    assert os.path.exists(project / ".triggerfish" / "dev.db")
