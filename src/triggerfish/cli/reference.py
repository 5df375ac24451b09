"""The command-line reference (``docs/cli.md``), generated from the Typer app.

``python -m triggerfish.cli.reference > docs/cli.md`` writes it; a test fails
when the file and the app differ, so the reference never drifts from the code.
It has no fenced code blocks: every command is a heading, its help, its usage
in a line of code and a table of its options.
"""

from __future__ import annotations

import inspect
from typing import Any

import typer

INTRO = """# Command-line reference

Generated from the `triggerfish` command itself
(`python -m triggerfish.cli.reference > docs/cli.md`); a test keeps the two in
step. `triggerfish COMMAND --help` prints the same in the terminal.

## Exit codes

| Code | Meaning |
| --- | --- |
| 0 | the command did what it was asked; a waited-for run (`trigger --wait`) `COMPLETED` |
| 1 | an error, or a waited-for run ended in another final status (`FAILED`, `CRASHED`, `CANCELED`, `TIMED_OUT`, `EXPIRED`, `SYSTEM_FAILURE`) |
| 2 | a usage error: an unknown option, bad JSON, a key of another environment than `--env` names |
| 3 | the command gave up waiting (`--timeout`) before the run ended |
| 4 | no server answered at the API URL |

## Options every command shares

Commands that ask a server take `--api-url` (else `TRIGGERFISH_API_URL`, else
`http://127.0.0.1:3030`), `--secret-key` (else `TRIGGERFISH_SECRET_KEY`, else
the dev server's key in `.triggerfish/`), `--env` (the environment the key must
belong to: a `tr_staging_…` key is refused with `--env prod`, by the CLI and by
the server, which answers 403 naming both environments) and `--json` (the
API's own JSON on stdout instead of tables; `runs logs --follow --json` prints
one object a line). Every command takes `--debug`: without it an error is one
line and a hint on stderr, with it the traceback too.
"""  # noqa: E501 (a Markdown table row is one line)


def render(app: typer.Typer | None = None) -> str:
    """The reference of ``app`` (the ``triggerfish`` command by default) as Markdown."""
    if app is None:
        from triggerfish.cli.main import app as main_app

        app = main_app
    root = typer.main.get_command(app)
    parts = [INTRO]
    for path, command in _commands(root, "triggerfish"):
        parts.append(_section(path, command))
    return "\n".join(parts).rstrip() + "\n"


def _commands(group: Any, path: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        if getattr(command, "hidden", False):
            continue
        full = f"{path} {name}"
        if hasattr(command, "commands"):
            found += _commands(command, full)
        else:
            found.append((full, command))
    return found


def _section(path: str, command: Any) -> str:
    usage = " ".join(_usage_piece(p) for p in command.params if _is_argument(p))
    lines = [f"## {path}", "", inspect.cleandoc(command.help or ""), ""]
    lines += [f"Usage: `{path} [OPTIONS]{(' ' + usage) if usage else ''}`", ""]
    rows = [_row(p) for p in command.params if not _is_argument(p)]
    arguments = [p for p in command.params if _is_argument(p)]
    if arguments:
        lines += ["| Argument | Meaning |", "| --- | --- |"]
        lines += [
            f"| `{_usage_piece(p)}` | {_cell(getattr(p, 'help', '') or '')} |" for p in arguments
        ]
        lines.append("")
    if rows:
        lines += ["| Option | Meaning | Default |", "| --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    """``int | None`` -> ``INT``, ``list[str] | None`` -> ``LIST TEXT``."""
    import types
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _type_name(args[0]) if args else ""
    if typing.get_origin(annotation) is list:
        return "LIST " + _type_name(args[0]) if args else "LIST"
    names = {str: "TEXT", int: "INT", float: "FLOAT", bool: "BOOL"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", "").upper()


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _usage_piece(param: Any) -> str:
    name = (param.name or "").upper()
    return name if param.required else f"[{name}]"


def _row(param: Any) -> str:
    names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    kind = _type_name(getattr(param.type_descriptor, "annotation", None))
    if kind and kind != "BOOL":
        names += f" {kind}"
    if getattr(param, "multiple", False) or kind.startswith("LIST"):
        names = names.replace(" LIST ", " ") + " (repeatable)"
    default = param.default
    shown = "" if default in (None, False, ()) or callable(default) else f"`{default}`"
    if param.required:
        shown = "required"
    return f"| {names} | {_cell(getattr(param, 'help', '') or '')} | {shown} |"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    import sys

    sys.stdout.write(render())
