"""Helpers shared by the commands: settings, the engine for admin commands, the client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from triggerfish.config import ServerSettings
from triggerfish.sdk._client import DEFAULT_API_URL, Triggerfish, env_setting

if TYPE_CHECKING:
    # The engine (the store, SQLAlchemy) is loaded only by the commands that use
    # it, so that `triggerfish worker` and the client commands stay small.
    from triggerfish.engine import Engine

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

STATE_DIR = ".triggerfish"
DEV_KEY_FILE = "dev-secret-key"
#: the dev server's keyring secret (``TRIGGERFISH_SERVER_SECRET`` of a production server)
SERVER_SECRET_FILE = "server-secret"


class Exit(IntEnum):
    """The command line's exit codes (docs/cli.md); scripts may rely on them."""

    #: the command did what it was asked; a waited-for run COMPLETED
    OK = 0
    #: an error, or a waited-for run ended in another final status (FAILED,
    #: CRASHED, CANCELED, TIMED_OUT, EXPIRED, SYSTEM_FAILURE)
    FAILED = 1
    #: the command line was wrong (an unknown option, bad JSON, a key of another environment)
    USAGE = 2
    #: the command gave up waiting (``--wait``/``--timeout``) before the run ended
    GAVE_UP = 3
    #: no server answered at the API URL
    UNREACHABLE = 4


def fail(message: str, code: int = Exit.FAILED, hint: str | None = None) -> typer.Exit:
    """Print ``error: message`` (and ``hint: …``) on stderr; the exit to raise."""
    from rich.text import Text

    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    if hint:
        err_console.print(Text("hint: ", style="bold") + Text(hint), soft_wrap=True)
    return typer.Exit(code)


@dataclass
class Options:
    """The options every command shares, for the helpers below (set per command)."""

    api_url: str | None = None
    secret_key: str | None = None
    env: str | None = None
    json: bool = False
    debug: bool = False
    #: what ``--json`` prints when the command has not set it: the last API answer
    result: Any = None
    has_result: bool = False
    #: the command printed its JSON itself, one object a line (``--follow``)
    streamed: bool = False
    #: the client the command made, whose last answer ``--json`` prints
    clients: list[Triggerfish] = field(default_factory=list)


_options: ContextVar[Options | None] = ContextVar("triggerfish_cli_options", default=None)
#: the options outside a command (a helper called from a test or another program)
_OUTSIDE = Options()


def options() -> Options:
    return _options.get() or _OUTSIDE


def set_result(value: Any) -> None:
    """What ``--json`` prints for this command (instead of the last API answer)."""
    opts = options()
    opts.result, opts.has_result = value, True


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (checked before starting a server)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (it comes with ``uvicorn[standard]``).

    The server and the worker spend much of their time in the event loop's
    socket and callback handling, which uvloop does in C. Set
    ``TRIGGERFISH_EVENT_LOOP=asyncio`` to run on the standard loop instead.
    """
    if os.environ.get("TRIGGERFISH_EVENT_LOOP", "").lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(fn())  # type: ignore[arg-type]


def admin_settings() -> ServerSettings:
    """The server settings of an admin command, which needs DATABASE_URL set.

    Without it the default (the dev server's SQLite file in this folder) would
    be migrated or given keys silently, which is never what an admin meant.
    """
    if not (os.environ.get("DATABASE_URL") or os.environ.get("TRIGGERFISH_DATABASE_URL")):
        raise fail(
            "DATABASE_URL is not set: this command works on a server's database",
            Exit.USAGE,
            hint="DATABASE_URL=postgresql://user@host/db triggerfish … (for the dev server's "
            "own SQLite store: DATABASE_URL=sqlite:///.triggerfish/dev.db)",
        )
    return ServerSettings()


async def with_engine(action: Callable[[Engine], Awaitable[T]]) -> T:
    """Open the configured database (DATABASE_URL) for an admin command."""
    from triggerfish.engine import Engine

    engine = Engine.create(admin_settings())
    try:
        await engine.start(background=False)
        return await action(engine)
    finally:
        await engine.close()


def dev_key_path(root: Path | None = None) -> Path:
    return (root or Path.cwd()) / STATE_DIR / DEV_KEY_FILE


def client(api_url: str | None = None, secret_key: str | None = None) -> Triggerfish:
    """A client from flags, then env vars, then the local dev server's key file.

    With ``--env``, the key must be one of that environment's (its ``tr_<env>_``
    prefix says which), so a dev key never reaches production by mistake.
    """
    opts = options()
    key = secret_key or opts.secret_key or env_setting("SECRET_KEY")
    if not key and dev_key_path().is_file():
        key = dev_key_path().read_text().strip()
    if not key:
        raise fail(
            "no secret key: set TRIGGERFISH_SECRET_KEY (or TRIGGER_SECRET_KEY) "
            "or pass --secret-key",
            Exit.USAGE,
            hint="`triggerfish dev` prints the dev key; `triggerfish keys create --env ENV` "
            "makes one on a server",
        )
    url = api_url or opts.api_url or env_setting("API_URL") or DEFAULT_API_URL
    made = Triggerfish(api_url=url, secret_key=key, env=opts.env)
    opts.clients.append(made)
    return made


def call_api(
    fn: Callable[[Triggerfish], T], api_url: str | None = None, secret_key: str | None = None
) -> T:
    """Run ``fn`` with a client made from the flags (errors: see :func:`handled`)."""
    c = client(api_url, secret_key)
    try:
        return fn(c)
    finally:
        c.close()


def last_answer() -> Any:
    """The body of the last API answer of this command, as the server sent it."""
    for c in reversed(options().clients):
        if c._transport.last_json is not None:
            return c._transport.last_json
    return None


ApiUrlOpt = typer.Option(
    "--api-url",
    help="Server URL, or several of one database comma-separated (failover) "
    "[env: TRIGGERFISH_API_URL, else TRIGGER_API_URL]",
)
KeyOpt = typer.Option(
    "--secret-key", help="API key [env: TRIGGERFISH_SECRET_KEY, else TRIGGER_SECRET_KEY]"
)


def as_json_arg(value: str, name: str) -> Any:
    import json

    try:
        return json.loads(value)
    except ValueError as exc:
        raise fail(f"{name} is not valid JSON: {exc}", Exit.USAGE) from None
