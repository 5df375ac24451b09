"""`triggerfish init` in an existing project (issue 20, part 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import invoke
from triggerfish.worker.discovery import DiscoveryError, ProjectConfig

FASTAPI_APP = """from fastapi import FastAPI

app = FastAPI()
"""


def _init(root: Path, *args: str) -> str:
    result = invoke("init", "--project", str(root), *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_init_sets_up_a_fastapi_project_once(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(FASTAPI_APP)
    out = _init(tmp_path)
    assert "only dev keys" in out.replace("\n", " ")
    assert (tmp_path / "triggerfish.toml").read_text().endswith('dirs = ["tasks"]\n')
    config = ProjectConfig.load(tmp_path)
    assert config.dirs == ["tasks"]
    example = (tmp_path / "tasks" / "example.py").read_text()
    assert '@task(id="hello-world")' in example
    compile(example, "example.py", "exec")
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["TRIGGERFISH_API_URL"] == "http://127.0.0.1:3030"
    assert env["TRIGGERFISH_SECRET_KEY"].startswith("tr_dev_")  # the key `dev` will adopt
    dev_key = (tmp_path / ".triggerfish" / "dev-secret-key").read_text().strip()
    assert env["TRIGGERFISH_SECRET_KEY"] == dev_key
    assert (tmp_path / ".env").stat().st_mode & 0o077 == 0
    assert {".env", ".triggerfish/"} <= set((tmp_path / ".gitignore").read_text().split())
    app = (tmp_path / "main.py").read_text()
    assert '@app.post("/hello/{who}")' in app and "uvicorn main:app --env-file .env" in app
    compile(app, "main.py", "exec")

    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    _init(tmp_path)  # twice: nothing changes
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_init_adds_to_pyproject_and_prints_a_django_snippet(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "shop"\n')
    (tmp_path / "manage.py").write_text("import django\n")
    out = _init(tmp_path, "--api-url", "http://127.0.0.1:4000")
    assert "[tool.triggerfish]" in (tmp_path / "pyproject.toml").read_text()
    assert not (tmp_path / "triggerfish.toml").exists()
    assert "JsonResponse" in out and "trigger_hello" in out
    assert "TRIGGERFISH_API_URL=http://127.0.0.1:4000" in (tmp_path / ".env").read_text()
    assert ProjectConfig.load(tmp_path).dirs == ["tasks"]


def test_two_config_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.triggerfish]\ndirs = ["jobs"]\n')
    (tmp_path / "triggerfish.toml").write_text('dirs = ["tasks"]\n')
    with pytest.raises(DiscoveryError, match="two project configurations"):
        ProjectConfig.load(tmp_path)
