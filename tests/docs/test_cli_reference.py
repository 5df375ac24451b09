"""docs/cli.md is the CLI's reference, generated from the Typer app: the two stay equal."""

from __future__ import annotations

from pathlib import Path

from triggerfish.cli.reference import render

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_generated_from_the_command_line() -> None:
    assert REFERENCE.read_text() == render(), (
        "docs/cli.md is out of date: python -m triggerfish.cli.reference > docs/cli.md"
    )


def test_the_reference_names_every_command_and_the_exit_codes() -> None:
    text = render()
    for command in ("triggerfish init", "triggerfish tasks list", "triggerfish schedules trigger"):
        assert f"## {command}\n" in text
    assert "| 3 | the command gave up waiting" in text
