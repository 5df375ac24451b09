"""``triggerfish tokens …``: create, inspect and complete waitpoint tokens over the API."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from triggerfish.cli._common import ApiUrlOpt, KeyOpt, as_json_arg, client, console, fail
from triggerfish.errors import ApiError

app = typer.Typer(help="Waitpoint tokens: create, show and complete.", no_args_is_help=True)


@app.command("complete")
def complete(
    token_id: str,
    data: Annotated[str, typer.Option(help="JSON the waiting task receives")] = "null",
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Complete a token; the waiting run resumes with DATA. Completing twice is harmless.

    Example: triggerfish tokens complete waitpoint_… --data '{"approved": true}'
    """
    value = as_json_arg(data, "--data")
    tf = client(api_url, secret_key)
    try:
        tf.waitpoints.complete_token(token_id, value)
    except ApiError as exc:
        raise fail(str(exc)) from None
    finally:
        tf.close()
    console.print(f"completed [bold]{token_id}[/]")


@app.command("create")
def create(
    timeout: Annotated[str | None, typer.Option(help="e.g. 1h, 30m, or an ISO date")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Create a token; prints its id and callback URL."""
    tf = client(api_url, secret_key)
    try:
        token = tf.waitpoints.create_token(
            timeout=timeout, tags=tag, idempotency_key=idempotency_key
        )
    except ApiError as exc:
        raise fail(str(exc)) from None
    finally:
        tf.close()
    console.print(f"{token.id}\n{token.url}", soft_wrap=True, markup=False)


@app.command("show")
def show(
    token_id: str,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Status, timeout and output of a token."""
    tf = client(api_url, secret_key)
    try:
        token = tf.waitpoints.retrieve_token(token_id)
    except ApiError as exc:
        raise fail(str(exc)) from None
    finally:
        tf.close()
    console.print(f"{token.id}  {token.status}", markup=False)
    if token.status != "WAITING":
        console.print(json.dumps(token.output, indent=2), markup=False)
