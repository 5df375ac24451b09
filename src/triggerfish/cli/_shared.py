"""The options every command shares, and one place that turns errors into exits.

:func:`shared_options` wraps a command's function: it adds ``--debug`` to all,
``--env`` (and ``--api-url`` / ``--secret-key`` where missing) to the commands
that talk to a server, and ``--json`` to those that print data. The values go
to :func:`~triggerfish.cli._common.options` for the helpers there; errors
become one line and a hint on stderr with an exit code of
:class:`~triggerfish.cli._common.Exit`, and a traceback only with ``--debug``
(or ``TRIGGERFISH_DEBUG=1``).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from triggerfish.cli._common import (
    ApiUrlOpt,
    Exit,
    KeyOpt,
    Options,
    _options,
    console,
    fail,
    last_answer,
)
from triggerfish.errors import (
    KeyRejected,
    RunTimeout,
    ServerUnreachable,
    TriggerfishError,
    WrongEnvironment,
    key_environment,
)

EnvOpt = typer.Option(
    "--env",
    "-e",
    help="environment the key must belong to (dev, prod, staging…) [env: TRIGGERFISH_ENV]",
)
JsonOpt = typer.Option("--json", help="print the API's JSON instead of tables")
DebugOpt = typer.Option("--debug", help="show the traceback of an error")

_ADDED: dict[str, tuple[Any, Any]] = {
    "api_url": (Annotated[str | None, ApiUrlOpt], None),
    "secret_key": (Annotated[str | None, KeyOpt], None),
    "env": (Annotated[str | None, EnvOpt], None),
    "json_output": (Annotated[bool, JsonOpt], False),
    "debug": (Annotated[bool, DebugOpt], False),
}


def shared_options(
    fn: Callable[..., Any], *, remote: bool, prints_data: bool
) -> Callable[..., Any]:
    """``fn`` with the shared options added to its signature and errors handled."""
    signature = inspect.signature(fn, eval_str=True)
    own = set(signature.parameters)
    wanted = ["debug"]
    if remote:
        wanted += ["api_url", "secret_key", "env"]
    if prints_data:
        wanted.append("json_output")
    added = [n for n in wanted if n not in own]
    params = list(signature.parameters.values()) + [
        inspect.Parameter(
            n, inspect.Parameter.KEYWORD_ONLY, annotation=_ADDED[n][0], default=_ADDED[n][1]
        )
        for n in added
    ]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        values = {n: kwargs.pop(n) for n in added}
        shared = {**values, **{n: kwargs[n] for n in _ADDED if n in kwargs}}
        opts = Options(
            api_url=shared.get("api_url"),
            secret_key=shared.get("secret_key"),
            env=shared.get("env") or (os.environ.get("TRIGGERFISH_ENV") if remote else None),
            json=bool(shared.get("json_output")),
            debug=bool(shared.get("debug")) or _debug_from_environment(),
        )
        token = _options.set(opts)
        quiet = console.quiet
        console.quiet = quiet or opts.json
        try:
            result = run_handled(fn, kwargs, opts)
            if opts.json and not opts.streamed:
                console.quiet = quiet
                value = opts.result if opts.has_result else last_answer()
                sys.stdout.write(json.dumps(value) + "\n")
            return result
        finally:
            console.quiet = quiet
            _options.reset(token)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    del command.__wrapped__  # typer reads the signature above, not the wrapped one's
    return command


#: ``triggerfish --debug …``: set by the root callback on every invocation
ROOT_DEBUG = False


def _debug_from_environment() -> bool:
    """``triggerfish --debug …`` (the root option) or ``TRIGGERFISH_DEBUG=1``."""
    return ROOT_DEBUG or os.environ.get("TRIGGERFISH_DEBUG", "").lower() in ("1", "true", "yes")


def run_handled(fn: Callable[..., Any], kwargs: dict[str, Any], opts: Options) -> Any:
    """Call ``fn``; a Triggerfish error becomes one line, a hint and its exit code."""
    try:
        return fn(**kwargs)
    except (typer.Exit, typer.Abort, typer.TyperException, typer.BadParameter):
        raise
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except Exception as exc:
        if opts.debug:
            raise
        raise _exit_for(exc, opts) from None


def _where(opts: Options, url: str) -> str:
    key = opts.secret_key or os.environ.get("TRIGGERFISH_SECRET_KEY") or ""
    env = opts.env or key_environment(key) or "dev"
    return f"server {url}, environment {env}"


def _exit_for(exc: Exception, opts: Options) -> typer.Exit:
    if isinstance(exc, ServerUnreachable):
        return fail(
            f"cannot reach the Triggerfish server ({_where(opts, exc.url)}): {exc.reason}",
            Exit.UNREACHABLE,
            hint="is it running? start one with `triggerfish dev`, or point "
            "TRIGGERFISH_API_URL (or --api-url) at yours",
        )
    if isinstance(exc, KeyRejected):
        return fail(str(exc), Exit.FAILED, hint="check TRIGGERFISH_SECRET_KEY and --api-url")
    if isinstance(exc, WrongEnvironment):
        return fail(str(exc), Exit.USAGE)
    if isinstance(exc, RunTimeout):
        return fail(
            str(exc).removeprefix("408: "),
            Exit.GAVE_UP,
            hint="the run goes on; `triggerfish runs show ID` tells how it ends",
        )
    if isinstance(exc, TriggerfishError):
        return fail(str(exc), Exit.FAILED)
    return fail(
        f"unexpected {type(exc).__name__}: {exc}",
        Exit.FAILED,
        hint="rerun with --debug for the traceback, and report it if it is ours",
    )
