"""``triggerfish queues …`` (with ``queues env-limit``), ``triggerfish doctor`` and
``triggerfish whoami``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from triggerfish.cli._common import ApiUrlOpt, KeyOpt, call_api, client, console, fail
from triggerfish.errors import ApiError
from triggerfish.sdk._client import QueueInfo

app = typer.Typer(
    help="Inspect queues, pause/resume them, change limits at run time.", no_args_is_help=True
)


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _rate(q: QueueInfo) -> str:
    return f"{q.rate_limit.limit}/{q.rate_limit.period:g}s" if q.rate_limit else "-"


def print_queues(queues: list[QueueInfo]) -> None:
    table = Table(title="Queues", header_style="bold")
    for column in ("Name", "Type", "Running", "Queued", "Limit", "Key limit", "Rate", "State"):
        table.add_column(column)
    for q in queues:
        table.add_row(
            q.name,
            q.type,
            str(q.running),
            str(q.queued),
            _limit(q.concurrency_limit),
            _limit(q.concurrency_key_limit),
            _rate(q),
            "[yellow]paused[/]" if q.paused else "[green]active[/]",
        )
    console.print(table)


QueueArg = Annotated[str, typer.Argument(help="queue name (task/<id> for a task's queue) or id")]


@app.command("list")
def list_queues(
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Every queue with its limits and running/queued counts."""
    print_queues(call_api(lambda c: c.queues.list(), api_url, secret_key))


@app.command("show")
def show(
    queue: QueueArg,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    print_queues([call_api(lambda c: c.queues.retrieve(queue), api_url, secret_key)])


@app.command("pause")
def pause(
    queue: QueueArg,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Start no more runs of the queue; new runs are still accepted."""
    print_queues([call_api(lambda c: c.queues.pause(queue), api_url, secret_key)])


@app.command("resume")
def resume(
    queue: QueueArg,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    print_queues([call_api(lambda c: c.queues.resume(queue), api_url, secret_key)])


@app.command("limit")
def limit(
    queue: QueueArg,
    value: Annotated[int | None, typer.Argument(help="new limit; omit with --reset")] = None,
    reset: Annotated[bool, typer.Option("--reset", help="back to the limit in code")] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Override the queue's concurrency limit (or --reset it to the declared one)."""
    if reset == (value is not None):
        raise fail("give a new limit, or --reset")
    if value is None:  # --reset, checked above
        info = call_api(lambda c: c.queues.reset_concurrency_limit(queue), api_url, secret_key)
    else:
        new_limit = value
        info = call_api(
            lambda c: c.queues.override_concurrency_limit(queue, new_limit), api_url, secret_key
        )
    print_queues([info])


@app.command("key-limit")
def key_limit(
    queue: QueueArg,
    value: Annotated[int | None, typer.Argument(help="slots per concurrency key")] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Slots each concurrency key may hold; omit the value to use the queue's limit."""
    info = call_api(lambda c: c.queues.set_concurrency_key_limit(queue, value), api_url, secret_key)
    print_queues([info])


@app.command("rate-limit")
def rate_limit(
    queue: QueueArg,
    count: Annotated[int | None, typer.Argument(help="starts per period")] = None,
    period: Annotated[str | None, typer.Argument(help="period, e.g. 1m")] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """At most COUNT starts per PERIOD (``rate-limit emails 100 1m``); no arguments removes it."""
    if (count is None) != (period is None):
        raise fail("give both COUNT and PERIOD, or neither to remove the rate limit")
    info = call_api(lambda c: c.queues.set_rate_limit(queue, count, period), api_url, secret_key)
    print_queues([info])


@app.command("env-limit")
def env_concurrency(
    value: Annotated[int | None, typer.Argument(help="new environment-wide limit")] = None,
    unlimited: Annotated[bool, typer.Option("--unlimited", help="remove the limit")] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="back to the project configuration's default")
    ] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Show, set (VALUE), remove (--unlimited) or reset (--reset) the environment-wide
    concurrency limit; a limit set here wins over the configured default until reset."""
    if reset:
        result = call_api(lambda c: c.environment.reset_concurrency_limit(), api_url, secret_key)
    elif value is not None or unlimited:
        result = call_api(
            lambda c: c.environment.set_concurrency_limit(None if unlimited else value),
            api_url,
            secret_key,
        )
    else:
        result = call_api(lambda c: c.environment.concurrency(), api_url, secret_key)
    limit_text = _limit(result["concurrencyLimit"])
    console.print(f"environment concurrency limit: {limit_text} (running: {result['running']})")


def doctor(
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Why runs might not be running: limits, paused queues, workers, the oldest queued run."""
    report = call_api(lambda c: c.environment.doctor(), api_url, secret_key)
    env = report["environment"]
    console.print(
        f"[bold]Environment[/] {env.get('slug', '')}: limit {_limit(env['concurrencyLimit'])}, "
        f"running {env['running']}"
    )
    waiting = report["waiting"]
    console.print(
        "[bold]Waiting[/]: "
        + (", ".join(f"{n} {s}" for s, n in sorted(waiting.items())) or "nothing")
    )
    print_queues([QueueInfo.model_validate(_as_item(q)) for q in report["queues"]])
    workers = Table(title="Workers online", header_style="bold")
    for column in ("Name", "Version", "Slots", "Tasks", "Last seen"):
        workers.add_column(column)
    for w in report["workers"]:
        workers.add_row(
            w["name"],
            w["version"],
            str(w["concurrency"]),
            str(len(w["tasks"])),
            f"{w['lastSeenSecondsAgo']:g}s ago",
        )
    console.print(workers)
    if not report["workers"]:
        console.print("[red]no worker is online[/]: start one with `triggerfish worker`")
    oldest = report["oldestQueuedRun"]
    if oldest:
        reason = oldest.get("reason") or {}
        console.print(
            f"[bold]Oldest queued run[/] {oldest['id']} ({oldest['taskIdentifier']}, "
            f"waiting {oldest['waitingSeconds']:g}s): {reason.get('message', '-')}"
        )
    else:
        console.print("[bold]Oldest queued run[/]: none queued")


def _as_item(q: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": q["name"],
        "name": q["name"],
        "type": "task" if q["name"].startswith("task/") else "custom",
        **q,
    }


def whoami(
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Which server, project and environment this key reaches (the key shown by its prefix)."""
    c = client(api_url, secret_key)
    try:
        me = c.environment.whoami()
    except ApiError as exc:
        raise fail(str(exc)) from None
    finally:
        c.close()
    project = (me.get("project") or {}).get("ref") or "-"
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Server", escape(c.api_url))
    table.add_row("Project", escape(project))
    table.add_row("Environment", escape((me.get("environment") or {}).get("slug") or "-"))
    table.add_row("Key", escape(c.key_prefix))
    console.print(table)
    if c.project_ref and c.project_ref != project:
        raise fail(
            f"TRIGGERFISH_PROJECT_REF / TRIGGER_PROJECT_REF is {c.project_ref!r} but this key "
            f"belongs to project {project!r}"
        )
