"""``triggerfish envvars …``: the variables task processes of an environment get."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from triggerfish.cli._common import ApiUrlOpt, KeyOpt, call_api, console, fail

app = typer.Typer(
    help="Environment variables given to every attempt of the environment's tasks "
    "(the key's environment; values sealed at rest, shown masked).",
    no_args_is_help=True,
)


def mask(value: str) -> str:
    """A value as lists show it: its length, never its characters."""
    return "•" * min(len(value), 8) if value else "(empty)"


@app.command("set")
def set_var(
    assignment: Annotated[str, typer.Argument(help="NAME=VALUE")],
    secret: Annotated[
        bool, typer.Option("--secret", help="never show the value again, anywhere")
    ] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Create or replace a variable; the next attempts get it (running ones keep theirs)."""
    name, sep, value = assignment.partition("=")
    if not sep or not name:
        raise fail(f"expected NAME=VALUE, got {assignment!r}")
    call_api(lambda c: c.envvars.set(name, value, secret=secret), api_url, secret_key)
    console.print(f"set {name}" + (" (secret)" if secret else ""))


@app.command("list")
def list_vars(
    show: Annotated[
        bool, typer.Option("--show", help="show the values of variables that are not secret")
    ] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Every variable of the environment, values masked."""
    variables = call_api(lambda c: c.envvars.list(), api_url, secret_key)
    table = Table(title="Environment variables", header_style="bold")
    for column in ("Name", "Value", "Secret", "Updated"):
        table.add_column(column)
    for v in variables:
        value = v.value if show and not v.is_secret else mask(v.value)
        updated = v.updated_at.strftime("%Y-%m-%d %H:%M:%S") if v.updated_at else ""
        table.add_row(v.name, value, "yes" if v.is_secret else "", updated)
    console.print(table)


@app.command("unset")
def unset(
    name: Annotated[str, typer.Argument(help="the variable's name")],
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Remove a variable."""
    call_api(lambda c: c.envvars.delete(name), api_url, secret_key)
    console.print(f"unset {name}")


@app.command("import")
def import_file(
    path: Annotated[Path, typer.Argument(help="a .env file (NAME=VALUE lines)")],
    override: Annotated[
        bool, typer.Option("--override", help="replace variables that already exist")
    ] = False,
    secret: Annotated[
        bool, typer.Option("--secret", help="mark every imported value secret")
    ] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Add every variable of a .env file (existing ones are kept unless --override)."""
    from dotenv import dotenv_values

    if not path.is_file():
        raise fail(f"{path}: no such file")
    parsed = dotenv_values(path)
    missing = [name for name, value in parsed.items() if value is None]
    if missing:
        raise fail(f"{path}: {', '.join(missing)} has no value (write NAME=VALUE)")
    variables = {name: value for name, value in parsed.items() if value is not None}
    if not variables:
        raise fail(f"{path}: no variables found")
    done = call_api(
        lambda c: c.envvars.upload(variables, override=override, secret=secret),
        api_url,
        secret_key,
    )
    console.print(f"imported {len(done.written)} variable(s) from {path}")
    if done.kept:
        console.print(f"kept {', '.join(done.kept)} as they were (pass --override to replace)")
