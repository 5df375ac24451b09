"""``triggerfish alerts``: add, list and remove alert rules; see their deliveries."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from triggerfish.cli._common import ApiUrlOpt, KeyOpt, call_api, console

app = typer.Typer(help="Alert rules of an environment and their deliveries", no_args_is_help=True)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="what the alert is called")],
    kind: Annotated[
        str,
        typer.Option(help="RUN_FAILED, FAILURE_RATE, QUEUE_AGE, NO_WORKER or WORKER_LOST"),
    ],
    channel: Annotated[str, typer.Option(help="WEBHOOK, SLACK or EMAIL")],
    target: Annotated[str, typer.Option(help="the webhook URL or the email address")],
    tasks: Annotated[str | None, typer.Option(help="task ids, comma-separated")] = None,
    threshold: Annotated[float | None, typer.Option(help="FAILURE_RATE: 0..1")] = None,
    window: Annotated[float | None, typer.Option(help="FAILURE_RATE: seconds")] = None,
    min_runs: Annotated[int | None, typer.Option(help="FAILURE_RATE: runs needed")] = None,
    queue: Annotated[str | None, typer.Option(help="QUEUE_AGE: the queue")] = None,
    max_age: Annotated[float | None, typer.Option(help="QUEUE_AGE: seconds")] = None,
    throttle: Annotated[float, typer.Option(help="one alert per this many seconds")] = 300,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Add a rule. A webhook rule prints the secret its deliveries are signed with."""
    config: dict[str, Any] = {"tasks": _csv(tasks)}
    for key, value in (
        ("threshold", threshold),
        ("window", window),
        ("min_runs", min_runs),
        ("queue", queue),
        ("max_age", max_age),
    ):
        if value is not None:
            config[key] = value
    rule = call_api(
        lambda c: c.alerts.add(
            name, kind.upper(), channel.upper(), target, config=config, throttle=throttle
        ),
        api_url,
        secret_key,
    )
    console.print(f"added alert rule {rule['id']} ({rule['kind']} -> {rule['channel']})")
    if rule.get("secret"):
        console.print(f"signing secret (shown once): {rule['secret']}")


@app.command("list")
def list_rules(
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """The environment's alert rules."""
    rules = call_api(lambda c: c.alerts.list(), api_url, secret_key)
    table = Table("id", "name", "kind", "channel", "target", "config", "throttle")
    for r in rules:
        table.add_row(
            r["id"],
            r["name"],
            r["kind"],
            r["channel"],
            r["target"],
            str(r["config"]),
            f"{r['throttle']:g}s",
        )
    console.print(table)


@app.command("remove")
def remove(
    rule_id: str,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Delete an alert rule."""
    call_api(lambda c: c.alerts.remove(rule_id), api_url, secret_key)
    console.print(f"removed {rule_id}")


@app.command("deliveries")
def deliveries(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """The latest deliveries: sent, pending (with retries) or failed."""
    rows = call_api(lambda c: c.alerts.deliveries(limit), api_url, secret_key)
    table = Table("id", "rule", "status", "count", "attempts", "created", "last error")
    for d in rows:
        table.add_row(
            d["id"],
            d["ruleId"],
            d["status"],
            str(d["count"]),
            str(d["attempts"]),
            d["createdAt"],
            d["lastError"] or "",
        )
    console.print(table)
