"""``triggerfish users …``: people who sign in to the dashboard (talks to the database)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from triggerfish.cli._common import console, fail, run_async, with_engine
from triggerfish.errors import UserError

if TYPE_CHECKING:
    from triggerfish.engine import Engine

app = typer.Typer(
    help="Dashboard users (passwords stored as argon2id hashes).", no_args_is_help=True
)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@app.command("create")
def create(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Create a user who can sign in to the dashboard (every environment, every action).

    Example: echo "$PASSWORD" | triggerfish users create ada --password-stdin
    """
    password = _password(password_stdin)

    async def go(engine: Engine) -> str:
        return await engine.users.create(username, password)

    try:
        user_id = run_async(lambda: with_engine(go))
    except UserError as exc:
        raise fail(str(exc)) from None
    console.print(f"created user [bold]{username}[/] ({user_id})")


@app.command("set-password")
def set_password(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Change a user's password; their open sessions end."""
    password = _password(password_stdin)

    async def go(engine: Engine) -> None:
        await engine.users.set_password(username, password)

    try:
        run_async(lambda: with_engine(go))
    except UserError as exc:
        raise fail(str(exc)) from None
    console.print(f"password of [bold]{username}[/] changed")


@app.command("list")
def list_users() -> None:
    """Dashboard users."""

    async def go(engine: Engine) -> list[tuple[str, str]]:
        return [(u.id, u.username) for u in await engine.users.list()]

    for user_id, name in run_async(lambda: with_engine(go)):
        console.print(f"{user_id}  {name}")
