"""Helpers shared by the commands: settings, the engine for admin commands, the client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from triggerfish.config import ServerSettings
from triggerfish.errors import TriggerfishError
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


def fail(message: str, code: int = 1) -> typer.Exit:
    from rich.text import Text

    err_console.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
    return typer.Exit(code)


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
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(fn())  # type: ignore[arg-type]
    except TriggerfishError as exc:
        raise fail(str(exc)) from None


async def with_engine(action: Callable[[Engine], Awaitable[T]]) -> T:
    """Open the configured database (DATABASE_URL) for an admin command."""
    from triggerfish.engine import Engine

    engine = Engine.create(ServerSettings())
    try:
        await engine.start(background=False)
        return await action(engine)
    finally:
        await engine.close()


def dev_key_path(root: Path | None = None) -> Path:
    return (root or Path.cwd()) / STATE_DIR / DEV_KEY_FILE


def client(api_url: str | None, secret_key: str | None) -> Triggerfish:
    """A client from flags, then env vars, then the local dev server's key file."""
    key = secret_key or env_setting("SECRET_KEY")
    if not key and dev_key_path().is_file():
        key = dev_key_path().read_text().strip()
    if not key:
        raise fail(
            "no secret key: set TRIGGERFISH_SECRET_KEY (or TRIGGER_SECRET_KEY) or pass "
            "--secret-key (`triggerfish dev` prints the dev key)"
        )
    url = api_url or env_setting("API_URL") or DEFAULT_API_URL
    return Triggerfish(api_url=url, secret_key=key)


def call_api(fn: Callable[[Triggerfish], T], api_url: str | None, secret_key: str | None) -> T:
    """Run ``fn`` with a client made from the flags; an API error becomes a clean exit."""
    from triggerfish.errors import ApiError

    c = client(api_url, secret_key)
    try:
        return fn(c)
    except ApiError as exc:
        raise fail(str(exc)) from None
    finally:
        c.close()


ApiUrlOpt = typer.Option(
    "--api-url", help="Server URL [env: TRIGGERFISH_API_URL, else TRIGGER_API_URL]"
)
KeyOpt = typer.Option(
    "--secret-key", help="API key [env: TRIGGERFISH_SECRET_KEY, else TRIGGER_SECRET_KEY]"
)


def as_json_arg(value: str, name: str) -> Any:
    import json

    try:
        return json.loads(value)
    except ValueError as exc:
        raise fail(f"{name} is not valid JSON: {exc}") from None
