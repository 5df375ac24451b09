"""``triggerfish tasks …``: the tasks workers registered, as the server knows them."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from triggerfish.cli._common import ApiUrlOpt, KeyOpt, call_api, console

app = typer.Typer(help="The tasks workers registered in the environment.", no_args_is_help=True)


@app.command("list")
def list_tasks(
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Every registered task: file, queue, retry policy, machine, schedule, versions."""
    tasks = call_api(lambda c: c.tasks.list(), api_url, secret_key)
    table = Table(title="Tasks", header_style="bold")
    widest = max([2, *(len(t.id) for t in tasks)])
    for column in ("ID", "File", "Queue", "Retry", "Machine", "Schedule", "Versions", "Online"):
        # an id is copied into commands: never wrapped nor cut
        table.add_column(
            column, no_wrap=column == "ID", min_width=widest if column == "ID" else None
        )
    for t in tasks:
        retry = t.retry
        table.add_row(
            t.id,
            t.file or "-",
            str(t.queue.get("name", "-")),
            f"{retry.get('maxAttempts', '-')} attempts, {retry.get('minDelay', '-')}s"
            f"..{retry.get('maxDelay', '-')}s",
            t.machine or "-",
            (t.schedule or {}).get("cron") or "-",
            f"{len(t.versions)} (latest {t.versions[0]['version'][:12]})" if t.versions else "-",
            str(t.workers_online) if t.workers_online else "[yellow]0[/]",
        )
    console.print(table)
    if not tasks:
        console.print("no task registered yet: start a worker (`triggerfish dev` or `worker`)")
