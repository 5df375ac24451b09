"""``triggerfish runs …`` and ``triggerfish trigger``: inspect and start runs over the API."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from triggerfish.cli._common import (
    ApiUrlOpt,
    Exit,
    KeyOpt,
    as_json_arg,
    call_api,
    client,
    console,
    err_console,
    options,
)
from triggerfish.errors import ConnectionLost, ServerUnreachable
from triggerfish.sdk._client import LogLine, Run

app = typer.Typer(help="List, inspect, follow and cancel runs.", no_args_is_help=True)

_STATUS_STYLE = {
    "COMPLETED": "green",
    "FAILED": "red",
    "CRASHED": "red",
    "SYSTEM_FAILURE": "red",
    "TIMED_OUT": "red",
    "CANCELED": "yellow",
    "EXPIRED": "yellow",
    "EXECUTING": "cyan",
    "DEQUEUED": "cyan",
    "WAITING": "magenta",
    "QUEUED": "blue",
    "DELAYED": "blue",
}


def _status(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@app.command("list")
def list_runs(
    status: Annotated[list[str] | None, typer.Option("--status", "-s")] = None,
    task: Annotated[list[str] | None, typer.Option("--task", "-t")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
    batch: Annotated[str | None, typer.Option(help="runs of this batch")] = None,
    schedule: Annotated[str | None, typer.Option(help="runs of this schedule")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="created at or after (ISO date, UTC)")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="created at or before")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 25,
    after: Annotated[str | None, typer.Option(help="cursor: runs older than this id")] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Recent runs, newest first; waiting runs say why they wait."""
    page = call_api(
        lambda c: c.runs.list(
            status=status,
            task=task,
            tag=tag,
            batch=batch,
            schedule=schedule,
            created_from=_utc(since),
            created_to=_utc(until),
            limit=limit,
            after=after,
        ),
        api_url,
        secret_key,
    )
    console.print(runs_table(page.data, console.width))
    if page.next_cursor:
        console.print(f"more: [dim]triggerfish runs list --after {page.next_cursor}[/]")


#: the list's columns, most wanted first: at a narrow width the last ones go, never the id
_COLUMNS = ("ID", "Status", "Task", "Attempts", "Created", "Duration", "Waiting", "Tags")


def runs_table(runs: list[Run], width: int) -> Table:
    """The runs as a table of ``width`` columns at most: every id in full (a cut id
    cannot be pasted), dropping the columns at the end of ``_COLUMNS`` first."""
    rows = [
        {
            "ID": run.id,
            "Status": run.status,
            "Task": run.task_identifier,
            "Attempts": "-" if run.attempt_count is None else str(run.attempt_count),
            "Created": _when(run.created_at),
            "Duration": f"{run.duration_ms / 1000:.2f}s" if run.duration_ms else "-",
            "Waiting": run.wait_reason.code if run.wait_reason else "",
            "Tags": ", ".join(run.tags),
        }
        for run in runs
    ]

    def needed(column: str) -> int:  # the widest cell, and rich's padding and border
        return max([len(column), *(len(r[column]) for r in rows)]) + 3

    shown = list(_COLUMNS)
    while len(shown) > 1 and sum(needed(c) for c in shown) + 1 > width:
        shown.pop()
    table = Table(title="Runs", header_style="bold")
    for column in shown:
        table.add_column(column, no_wrap=column in ("ID", "Status"), min_width=needed(column) - 3)
    for row in rows:
        table.add_row(*(_status(row[c]) if c == "Status" else row[c] for c in shown))
    return table


@app.command("replay")
def replay(
    run_id: str,
    from_step: Annotated[
        int | None, typer.Option(min=1, help="reuse the journal before this step (1-based)")
    ] = None,
    reuse_tokens: Annotated[
        bool,
        typer.Option(
            "--reuse-tokens",
            help="with --from-step: reuse tokens completed before that step instead of "
            "waiting for them again",
        ),
    ] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Start a new run like RUN_ID; with --from-step N, steps before N are not re-run."""
    handle = call_api(
        lambda c: c.runs.replay(run_id, from_step=from_step, reuse_tokens=reuse_tokens),
        api_url,
        secret_key,
    )
    console.print(handle.id)


@app.command("show")
def show(
    run_id: str,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Status, attempts, payload, output and error of one run."""
    run = call_api(lambda c: c.runs.retrieve(run_id), api_url, secret_key)
    print_run(run)


def _print_steps(entries: list[dict[str, Any]]) -> None:
    """The run's durable calls, with each step's display fields and failed tries."""
    steps = Table(title="Steps", header_style="bold")
    for column in ("#", "Kind", "Key", "Shown as", "Status", "Tries", "Duration"):
        steps.add_column(column)
    history: list[str] = []
    for st in entries:
        ms = st.get("durationMs")
        display = st.get("display") or {}
        shown = " ".join(
            part
            for part in (
                f"[{display['icon']}]" if display.get("icon") else "",
                display.get("name") or "",
                json.dumps(display["properties"]) if display.get("properties") else "",
            )
            if part
        )
        tries = st.get("tries") or []
        ok = 1 if st.get("status") == "OK" and st.get("kind") == "step" else 0
        steps.add_row(
            str(st.get("index", "")),
            st.get("kind", ""),
            escape(st.get("name", "")),
            escape(shown) or "-",
            _status(st.get("status", "")),
            str(len(tries) + ok) if tries else "-",
            f"{ms} ms" if ms is not None else "-",
        )
        for t in tries:
            error = t.get("error") or {}
            history.append(
                f"step {st.get('index')} ({st.get('name')}) try {t.get('number')} failed "
                f"at {t.get('at') or '?'}: {error.get('name', 'Error')}: {error.get('message', '')}"
            )
    console.print(steps)
    if history:
        console.print("[bold]Retry history[/]")
        for line in history:
            console.print(f"  {line}", markup=False, highlight=False)


def print_run(run: Run) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("Run", run.id),
        ("Task", run.task_identifier),
        ("Status", _status(run.status)),
        ("Machine", run.machine or "-"),
        ("Queue", run.queue or "-"),
        ("Concurrency key", run.concurrency_key or "-"),
        ("Waiting", run.wait_reason.message if run.wait_reason else "-"),
        ("Batch", run.batch_id or "-"),
        ("Replay of", run.replayed_from_run_id or "-"),
        ("Tags", ", ".join(run.tags) or "-"),
        ("Created", _when(run.created_at)),
        ("Started", _when(run.started_at)),
        ("Finished", _when(run.finished_at)),
    ):
        table.add_row(label, value)
    console.print(table)
    if run.attempts:
        attempts = Table(title="Attempts", header_style="bold")
        for column in ("#", "Status", "Started", "Finished", "Error"):
            attempts.add_column(column)
        for a in run.attempts:
            attempts.add_row(
                str(a.number),
                _status(a.status),
                _when(a.started_at),
                _when(a.finished_at),
                a.error.message if a.error else "",
            )
        console.print(attempts)
    if run.waiting_for:
        waits = Table(title="Waiting for", header_style="bold")
        for column in ("Type", "What", "Times out"):
            waits.add_column(column)
        for w in run.waiting_for:
            waits.add_row(w.get("type", ""), _wait_target(w), w.get("timeoutAt") or "-")
        console.print(waits)
    if run.steps:
        _print_steps(run.steps)
    _json_block("Payload", run.payload)
    if run.status == "COMPLETED":
        _json_block("Output", run.output)
    if run.error:
        console.print(f"[bold red]Error:[/] {run.error.name or 'Error'}: {run.error.message}")
        if run.error.stack_trace:
            console.print(run.error.stack_trace, markup=False, highlight=False)


def _wait_target(w: dict[str, Any]) -> str:
    """What a waitpoint of a waiting run stands for, in one cell."""
    kind = w.get("type")
    if kind == "DURATION":
        return f"until {w.get('until')}"
    if kind == "TOKEN":
        return f"token {w.get('tokenId')}"
    if kind == "RUN":
        return f"run {w.get('runId')}"
    if kind == "EVENT":
        return f"event {w.get('event')} matching {json.dumps(w.get('filter') or {})}"
    return str(w.get("id", ""))


def _json_block(title: str, value: Any) -> None:
    console.print(f"[bold]{title}:[/]")
    console.print(Syntax(json.dumps(value, indent=2), "json", theme="ansi_dark"))


@app.command("logs")
def logs(
    run_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Log lines of a run (print, stdout/stderr and logger.*), with --follow until it ends."""
    c = client(api_url, secret_key)
    options().streamed = True  # --json: a line per log line
    after = 0
    try:
        while True:
            try:
                lines = c.runs.logs(run_id, after=after)
                done = not follow or c.runs.retrieve(run_id).is_completed
                if done and follow:  # what arrived between the last read and the end
                    lines += c.runs.logs(run_id, after=lines[-1].id if lines else after)
            except (ServerUnreachable, ConnectionLost) as exc:
                if not follow:
                    raise
                _reconnecting(exc)
                continue
            for line in lines:
                after = line.id
                _print_log_line(line)
            if done:
                return
            time.sleep(0.5)
    finally:
        c.close()


def _print_log_line(line: LogLine) -> None:
    if options().json:  # one object a line, the REST shape
        sys.stdout.write(json.dumps(line.model_dump(mode="json", by_alias=True)) + "\n")
        sys.stdout.flush()
        return
    ts = datetime.fromtimestamp(line.ts).strftime("%H:%M:%S.%f")[:-3]
    fields = " ".join(f"{k}={json.dumps(v)}" for k, v in (line.fields or {}).items())
    console.print(
        f"[dim]{ts}[/] [bold]#{line.attempt}[/] {line.level:<5} "
        f"[dim]{line.stream}[/] {line.message} [cyan]{fields}[/]",
        highlight=False,
    )


def _reconnecting(exc: Exception) -> None:
    """Say once a second that the server is away, and wait before asking again."""
    err_console.print(f"[yellow]{exc}[/] - retrying", highlight=False)
    time.sleep(1.0)


@app.command("cancel")
def cancel(
    run_id: str,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Cancel a run that has not finished."""
    call_api(lambda c: c.runs.cancel(run_id), api_url, secret_key)
    console.print(f"canceled {run_id}")


def trigger(
    task_id: str,
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON payload")] = "{}",
    wait: Annotated[bool, typer.Option("--wait", "-w", help="wait for the result")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait with --wait")] = 300,
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    queue: Annotated[str | None, typer.Option(help="queue name (default: the task's)")] = None,
    concurrency_key: Annotated[str | None, typer.Option("--concurrency-key")] = None,
    delay: Annotated[str | None, typer.Option(help="start later: '1h30m' or an ISO date")] = None,
    ttl: Annotated[str | None, typer.Option(help="expire if not started within, e.g. 10m")] = None,
    priority: Annotated[float | None, typer.Option(help="seconds of head start")] = None,
    machine: Annotated[str | None, typer.Option(help="machine preset")] = None,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts")] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Trigger a task by id, optionally waiting for its result.

    With --wait the exit code says how the run ended: 0 COMPLETED, 1 any other
    final status, 3 still running after --timeout, 4 the server is unreachable.
    """
    data = as_json_arg(payload, "--payload")
    c = client(api_url, secret_key)
    try:
        handle = c.tasks.trigger(
            task_id,
            data,
            tags=tag,
            idempotency_key=idempotency_key,
            queue=queue,
            concurrency_key=concurrency_key,
            delay=delay,
            ttl=ttl,
            priority=priority,
            machine=machine,
            max_attempts=max_attempts,
        )
        console.print(f"triggered [bold]{handle.id}[/]" + (" (cached)" if handle.is_cached else ""))
        if wait:
            run = c.runs.poll(handle.id, timeout=timeout)
            print_run(run)
            if run.status != "COMPLETED":
                # the run's own error was printed above; scripts read the code
                raise typer.Exit(Exit.FAILED)
    finally:
        c.close()


@app.command("reschedule")
def reschedule(
    run_id: str,
    delay: Annotated[str, typer.Argument(help="new start: a duration from now or an ISO date")],
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Move a DELAYED run's start."""
    run = call_api(lambda c: c.runs.reschedule(run_id, delay), api_url, secret_key)
    console.print(f"{run_id} now starts at {_when(run.delayed_until)}")


def _utc(value: datetime | None) -> datetime | None:
    from datetime import UTC

    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def send(
    name: str,
    payload: Annotated[str, typer.Option(help="event payload as JSON")] = "null",
    event_id: Annotated[
        str | None, typer.Option("--id", help="idempotency: a repeated id starts nothing")
    ] = None,
    api_url: Annotated[str | None, ApiUrlOpt] = None,
    secret_key: Annotated[str | None, KeyOpt] = None,
) -> None:
    """Send an event: starts every task with on_event=NAME, wakes matching waits."""
    body = as_json_arg(payload, "--payload")
    sent = call_api(lambda c: c.events.send(name, body, id=event_id), api_url, secret_key)
    console.print(json.dumps(sent), markup=False)
