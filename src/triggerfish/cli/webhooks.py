"""``triggerfish webhooks …``: endpoints that turn signed deliveries into events."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from triggerfish.cli._common import ApiUrlOpt, KeyOpt, as_json_arg, call_api, console

app = typer.Typer(
    help="Incoming webhooks: create endpoints, list them, read deliveries.",
    no_args_is_help=True,
)


@app.command("create")
def create(
    source: Annotated[
        str,
        typer.Option(help="github, stripe, slack, standard-webhooks, hmac-sha256, or a custom one"),
    ],
    secret: Annotated[
        str | None, typer.Option(help="the source's signing secret (default: generate one)")
    ] = None,
    event_name: Annotated[
        str | None, typer.Option(help="fixed event name (for sources that name none)")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", help="verifier option as name=value, e.g. header=x-sig"),
    ] = None,
    options_json: Annotated[
        str | None, typer.Option("--options", help="verifier options as a JSON object")
    ] = None,
    description: Annotated[str | None, typer.Option()] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Create an endpoint; prints its URL (and the secret, when generated).

    Example: triggerfish webhooks create --source github --secret "$GITHUB_WEBHOOK_SECRET"
    """
    options = as_json_arg(options_json, "--options") if options_json else {}
    for item in option or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: expected name=value", param_hint="--option")
        options[name] = value
    hook = call_api(
        lambda tf: tf.webhooks.create(
            source,
            secret=secret,
            event_name=event_name,
            options=options,
            description=description,
        ),
        api_url,
        secret_key,
    )
    console.print(f"{hook.id}\n{hook.url}", soft_wrap=True, markup=False)
    if secret is None:
        console.print(f"secret (shown once): {hook.secret}", soft_wrap=True, markup=False)


@app.command("list")
def list_(
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Endpoints with their source, event name and refused deliveries."""
    hooks = call_api(lambda tf: tf.webhooks.list(), api_url, secret_key)
    table = Table("id", "source", "event", "rejected", "url")
    for h in hooks:
        table.add_row(h.id, h.source, h.event_name or "(from source)", str(h.rejected_count), h.url)
    console.print(table)


@app.command("deliveries")
def deliveries(
    endpoint_id: str,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """An endpoint's verified deliveries, newest first: event, outcome, runs started."""
    rows = call_api(
        lambda tf: tf.webhooks.deliveries(endpoint_id, limit=limit), api_url, secret_key
    )
    if as_json:
        data = [r.model_dump(mode="json", by_alias=True) for r in rows]
        console.print(json.dumps(data, indent=2), markup=False, soft_wrap=True)
        return
    table = Table("delivery", "event", "event id", "outcome", "runs")
    for r in rows:
        table.add_row(r.id, r.event_name, r.event_id, r.outcome, ", ".join(r.runs) or "-")
    console.print(table)


@app.command("delete")
def delete(
    endpoint_id: str,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Remove an endpoint (its URL answers 404 from then on)."""
    call_api(lambda tf: tf.webhooks.delete(endpoint_id), api_url, secret_key)
    console.print(f"deleted {endpoint_id}", markup=False)
