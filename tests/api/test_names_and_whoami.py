"""Trigger.dev's environment names (``TRIGGER_SECRET_KEY``, ``TRIGGER_API_URL``,
``TRIGGER_PROJECT_REF``) and ``triggerfish whoami`` against a real server."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from tests.api.conftest import Served
from triggerfish.cli.main import app
from triggerfish.sdk._client import Triggerfish

NAMES = ("SECRET_KEY", "API_URL", "PROJECT_REF")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in NAMES:
        monkeypatch.delenv(f"TRIGGERFISH_{name}", raising=False)
        monkeypatch.delenv(f"TRIGGER_{name}", raising=False)
    return monkeypatch


def test_trigger_dev_names_are_read_and_ours_win(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TRIGGER_SECRET_KEY", "tr_dev_theirs")
    clean_env.setenv("TRIGGER_API_URL", "http://theirs.example:1")
    clean_env.setenv("TRIGGER_PROJECT_REF", "proj_theirs")
    theirs = Triggerfish(socket=False)
    assert theirs.api_url == "http://theirs.example:1"
    assert theirs.key_prefix == "tr_dev_thei…" and theirs.project_ref == "proj_theirs"
    clean_env.setenv("TRIGGERFISH_SECRET_KEY", "tr_dev_ours")
    clean_env.setenv("TRIGGERFISH_API_URL", "http://ours.example:2")
    ours = Triggerfish(socket=False)
    assert ours.api_url == "http://ours.example:2" and ours.key_prefix == "tr_dev_ours…"


async def test_whoami_names_server_project_environment_and_key_prefix(
    served: Served, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("TRIGGER_SECRET_KEY", served.key)
    clean_env.setenv("TRIGGER_API_URL", served.url)
    clean_env.setenv("COLUMNS", "200")
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, app, ["whoami"])
    assert result.exit_code == 0, result.output
    assert served.url in result.output and "dev" in result.output
    assert served.key not in result.output and served.key[:10] in result.output
    clean_env.setenv("TRIGGER_PROJECT_REF", "proj_elsewhere")
    wrong = await asyncio.to_thread(runner.invoke, app, ["whoami"])
    assert wrong.exit_code == 1 and "proj_elsewhere" in wrong.output
