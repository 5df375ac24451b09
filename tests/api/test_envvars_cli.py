"""``triggerfish envvars set/import/list/unset`` against a real server, in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner, Result

from tests.api.conftest import Served
from triggerfish.cli.main import app


async def test_envvars_commands_set_import_list_masked_and_unset(
    served: Served, tmp_path: Path
) -> None:
    runner = CliRunner()

    async def cli(*args: str) -> Result:
        flags = ["--api-url", served.url, "--secret-key", served.key]
        return await asyncio.to_thread(runner.invoke, app, ["envvars", *args, *flags])

    done = await cli("set", "PLAIN=visible-value")
    assert done.exit_code == 0, done.output
    assert (await cli("set", "--secret", "TOKEN=hidden-value")).exit_code == 0
    dotenv = tmp_path / ".env"
    dotenv.write_text('# a comment\nexport REGION=eu\nQUOTED="two words"\nPLAIN=not-replaced\n')
    done = await cli("import", str(dotenv))
    assert done.exit_code == 0, done.output
    assert "imported 2" in done.output and "kept PLAIN" in done.output
    listed = await cli("list")
    assert all(n in listed.output for n in ("PLAIN", "TOKEN", "REGION", "QUOTED"))
    assert "value" not in listed.output and "two words" not in listed.output  # masked
    shown = await cli("list", "--show")
    assert "visible-value" in shown.output and "two words" in shown.output
    assert "hidden-value" not in shown.output  # a secret is never sent back
    values = (await served.http.get("/api/v1/envvars/QUOTED")).json()
    assert values["value"] == "two words"
    bad = await cli("set", "TRIGGER_SECRET_KEY=x")
    assert bad.exit_code != 0 and "reserved" in bad.output
    for name in ("PLAIN", "TOKEN", "REGION", "QUOTED"):
        assert (await cli("unset", name)).exit_code == 0
    assert (await served.http.get("/api/v1/envvars")).json()["data"] == []
    missing = await cli("unset", "PLAIN")
    assert missing.exit_code != 0 and "not found" in missing.output
