"""Output scripts can read (issue 20, part 2): --json everywhere with the REST shape,
full run ids at any width, --env and --api-url on every command that asks a server."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console

from tests.cli.conftest import Live, invoke_async
from triggerfish.cli.main import LOCAL, LOCAL_DATA, app
from triggerfish.cli.runs import runs_table
from triggerfish.sdk._models import Run


def _commands() -> list[tuple[str, Any]]:
    """Every command of the CLI as (path, click command)."""
    found: list[tuple[str, Any]] = []

    def walk(group: Any, path: str) -> None:
        for name, sub in group.commands.items():
            full = f"{path} {name}".strip()
            if hasattr(sub, "commands"):
                walk(sub, full)
            else:
                found.append((full, sub))

    walk(typer.main.get_command(app), "")
    return found


def test_every_command_that_asks_a_server_takes_env_api_url_and_json() -> None:
    commands = _commands()
    assert len(commands) > 30
    for path, command in commands:
        options = {o for p in command.params for o in getattr(p, "opts", [])}
        assert "--debug" in options, path
        top = path.split()[0]
        if top not in LOCAL:
            assert {"--env", "--api-url", "--secret-key", "--json"} <= options, path
        elif top in LOCAL_DATA and path.split()[-1] in ("list", "create"):
            assert "--json" in options, path


def _run(i: int, **extra: Any) -> Run:
    return Run.model_validate(
        {
            "id": f"run_01jz{i:022d}",
            "status": "COMPLETED",
            "taskIdentifier": "a-task-with-a-rather-long-identifier",
            "isCompleted": True,
            "isSuccess": True,
            "isFailed": False,
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z",
            "durationMs": 1234,
            "tags": ["customer-1234", "region-eu-west"],
            **extra,
        }
    )


def _render(table: Any, width: int) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_runs_list_keeps_full_ids_at_80_columns_and_shows_attempt_counts() -> None:
    runs = [_run(1, attemptCount=2), _run(2)]
    text = _render(runs_table(runs, 80), 80)
    assert all(r.id in text for r in runs)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "Tags" not in text  # the last columns go first
    wide = _render(runs_table(runs, 200), 200)
    assert "customer-1234" in wide
    row = next(line for line in wide.splitlines() if runs[0].id in line)
    assert "│ 2 " in row  # attemptCount, where the API gives it
    row = next(line for line in wide.splitlines() if runs[1].id in line)
    assert "│ - " in row


async def test_json_prints_what_the_api_answers(live: Live) -> None:
    run_id = await live.trigger(payload={"a": 1})
    listed = await invoke_async("runs", "list", "--json", env=live.env)
    assert listed.exit_code == 0, listed.output
    page = json.loads(listed.stdout)
    assert set(page) >= {"data", "pagination"} and page["data"][0]["id"] == run_id
    shown = json.loads((await invoke_async("runs", "show", run_id, "--json", env=live.env)).stdout)
    assert shown["id"] == run_id and shown["payload"] == {"a": 1}
    assert shown["taskIdentifier"] == "job"
    queues = json.loads((await invoke_async("queues", "list", "--json", env=live.env)).stdout)
    assert [q["name"] for q in queues["data"]] == ["job"]
    narrow = await invoke_async("runs", "list", env={**live.env, "COLUMNS": "80"})
    assert run_id in narrow.stdout
