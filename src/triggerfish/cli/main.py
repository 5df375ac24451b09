"""The ``triggerfish`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from triggerfish.cli import admin, processes, queues, runs, schedules, tokens, users, webhooks
from triggerfish.cli._common import fail, loop_factory, port_is_free

app = typer.Typer(
    help="Triggerfish: durable background jobs and workflows for Python.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(runs.app, name="runs")
app.add_typer(schedules.app, name="schedules")
app.add_typer(tokens.app, name="tokens")
app.add_typer(queues.app, name="queues")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(users.app, name="users")
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.keys_app, name="keys")
app.command("trigger")(runs.trigger)
app.command("send")(runs.send)
app.command("doctor")(queues.doctor)
app.command("whoami")(queues.whoami)
app.command("server")(processes.server)
app.command("worker")(processes.worker)


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="port of the dev server")] = 3030,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    dirs: Annotated[
        list[str] | None, typer.Option("--dir", help="task folders (default: pyproject)")
    ] = None,
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
    concurrency: Annotated[int, typer.Option(min=1, help="attempts run at once")] = 4,
) -> None:
    """Server + worker on a local SQLite store, reloading the worker when tasks change."""
    import asyncio

    from triggerfish.cli.dev import run_dev
    from triggerfish.worker.discovery import DiscoveryError, ProjectConfig

    try:
        config = ProjectConfig.load(project, dirs)
        config.task_files()
    except DiscoveryError as exc:
        raise fail(str(exc)) from None
    if not port_is_free(host, port):
        raise fail(f"port {port} on {host} is taken; choose another with --port")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(run_dev(config, host, port, concurrency))


if __name__ == "__main__":
    app()
