"""``triggerfish schedules …``: list, create, change and remove cron schedules over the API."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from triggerfish.cli._common import ApiUrlOpt, KeyOpt, call_api, console
from triggerfish.sdk._schedules import Schedule

app = typer.Typer(
    help="List, create, change, pause and remove cron schedules.", no_args_is_help=True
)

TaskOpt = typer.Option("--task", "-t", help="id of a task declared with @schedules.task")
CronOpt = typer.Option("--cron", "-c", help='5-field cron expression, e.g. "0 9 * * MON-FRI"')
TzOpt = typer.Option("--timezone", "--tz", help="IANA time zone (default UTC)")
ExternalOpt = typer.Option("--external-id", help="your id for this schedule (e.g. a customer)")


def _next_run(s: Schedule) -> str:
    if s.next_run is None:
        return "-"
    when = s.next_run.astimezone(ZoneInfo(s.timezone))
    return when.strftime("%Y-%m-%d %H:%M %Z")


def print_schedule(s: Schedule) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("Schedule", s.id),
        ("Type", s.type),
        ("Task", s.task),
        ("Cron", f"{s.cron}  [dim]({s.generator.description})[/]"),
        ("Time zone", s.timezone),
        ("Active", "yes" if s.active else "[yellow]no[/]"),
        ("Next run", _next_run(s)),
        ("External id", s.external_id or "-"),
        ("Dedup key", s.deduplication_key or "-"),
    ):
        table.add_row(label, value)
    console.print(table)


@app.command("list")
def list_schedules(
    task: Annotated[str | None, typer.Option("--task", "-t", help="only this task's")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=100)] = 20,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Declarative and imperative schedules of the environment."""
    result = call_api(
        lambda c: c.schedules.list(page=page, per_page=per_page, task=task), api_url, secret_key
    )
    table = Table(title="Schedules", header_style="bold")
    for column in ("ID", "Task", "Type", "Cron", "Time zone", "Next run", "Active", "External id"):
        table.add_column(column)
    for s in result.data:
        table.add_row(
            s.id,
            s.task,
            s.type.lower(),
            s.cron,
            s.timezone,
            _next_run(s),
            "yes" if s.active else "[yellow]no[/]",
            s.external_id or "",
        )
    console.print(table)
    if result.current_page < result.total_pages:
        console.print(f"more: [dim]triggerfish schedules list --page {result.current_page + 1}[/]")


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="sched_… id or deduplication key")],
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """One schedule, with its next run in its own time zone."""
    print_schedule(call_api(lambda c: c.schedules.retrieve(ref), api_url, secret_key))


@app.command("create")
def create(
    task: Annotated[str, TaskOpt],
    cron: Annotated[str, CronOpt],
    timezone: Annotated[str | None, TzOpt] = None,
    external_id: Annotated[str | None, ExternalOpt] = None,
    deduplication_key: Annotated[
        str | None,
        typer.Option("--dedup-key", help="creating again with this key updates instead"),
    ] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Give a scheduled task a schedule (same --dedup-key: update that one)."""
    made = call_api(
        lambda c: c.schedules.create(
            task=task,
            cron=cron,
            timezone=timezone,
            external_id=external_id,
            deduplication_key=deduplication_key,
        ),
        api_url,
        secret_key,
    )
    print_schedule(made)


@app.command("update")
def update(
    ref: Annotated[str, typer.Argument(help="sched_… id or deduplication key")],
    task: Annotated[str | None, TaskOpt] = None,
    cron: Annotated[str | None, CronOpt] = None,
    timezone: Annotated[str | None, TzOpt] = None,
    external_id: Annotated[str | None, ExternalOpt] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Change an imperative schedule: only the options given (the rest keep their values)."""
    changed = call_api(
        lambda c: c.schedules.update(
            ref, task=task, cron=cron, timezone=timezone, external_id=external_id
        ),
        api_url,
        secret_key,
    )
    print_schedule(changed)


@app.command("trigger")
def trigger(
    ref: Annotated[str, typer.Argument(help="sched_… id or deduplication key")],
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Run the schedule's task now, with the payload a slot now would get (the
    timetable does not move); prints the run id."""
    handle = call_api(lambda c: c.schedules.trigger(ref), api_url, secret_key)
    console.print(handle.id, highlight=False)


@app.command("delete")
def delete(
    ref: Annotated[str, typer.Argument(help="sched_… id or deduplication key")],
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Remove an imperative schedule (declarative ones go when their cron leaves the code)."""
    console.print(f"deleted {call_api(lambda c: c.schedules.delete(ref), api_url, secret_key)}")


@app.command("activate")
def activate(
    ref: Annotated[str, typer.Argument(help="sched_… id or deduplication key")],
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Fire again, from the next slot after now."""
    print_schedule(call_api(lambda c: c.schedules.activate(ref), api_url, secret_key))


@app.command("deactivate")
def deactivate(
    ref: Annotated[str, typer.Argument(help="sched_… id or deduplication key")],
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Stop firing until activated (slots in between never run)."""
    print_schedule(call_api(lambda c: c.schedules.deactivate(ref), api_url, secret_key))


@app.command("timezones")
def timezones(
    exclude_utc: Annotated[bool, typer.Option("--exclude-utc")] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """The IANA time zone names a schedule may use, one a line."""
    for zone in call_api(
        lambda c: c.schedules.timezones(exclude_utc=exclude_utc), api_url, secret_key
    ):
        console.print(zone, highlight=False)
