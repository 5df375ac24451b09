"""The ``triggerfish`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from triggerfish.cli import (
    _shared,
    admin,
    alerts,
    envvars,
    processes,
    queues,
    runs,
    schedules,
    tasks,
    tokens,
    users,
    webhooks,
)
from triggerfish.cli._common import fail, loop_factory, port_is_free
from triggerfish.cli._shared import shared_options

app = typer.Typer(
    help="Triggerfish: durable background jobs and workflows for Python.\n\n"
    "Exit codes: 0 done (a waited-for run COMPLETED); 1 an error, or the run ended in "
    "another final status; 2 a usage error; 3 gave up waiting; 4 no server answered.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(runs.app, name="runs")
app.add_typer(tasks.app, name="tasks")
app.add_typer(schedules.app, name="schedules")
app.add_typer(tokens.app, name="tokens")
app.add_typer(queues.app, name="queues")
app.add_typer(webhooks.app, name="webhooks")
app.add_typer(users.app, name="users")
app.add_typer(alerts.app, name="alerts")
app.add_typer(envvars.app, name="envvars")
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(admin.envs_app, name="environments")
app.command("trigger")(runs.trigger)
app.command("send")(runs.send)
app.command("doctor")(queues.doctor)
app.command("whoami")(queues.whoami)
app.command("server")(processes.server)
app.command("worker")(processes.worker)


@app.command("init")
def init(
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
    api_url: Annotated[
        str, typer.Option("--api-url", help="the dev server's URL written to .env")
    ] = "http://127.0.0.1:3030",
) -> None:
    """Set Triggerfish up in this project: config, tasks/ with an example, a .env with
    the dev URL and a dev key, and a route in a FastAPI or Flask app that triggers it."""
    from triggerfish.cli.init import init as run_init

    run_init(project.resolve(), api_url)


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
    from triggerfish import _otel

    _otel.configure("triggerfish-dev")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(run_dev(config, host, port, concurrency))


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="show tracebacks [env: TRIGGERFISH_DEBUG=1]")
    ] = False,
) -> None:
    """The options before any command."""
    _shared.ROOT_DEBUG = debug  # read by each command (cli/_shared.py)


#: commands that run here rather than ask a server (no --api-url, --env)
LOCAL = {"dev", "server", "worker", "init", "db", "keys", "environments", "users"}
#: local commands that print data (so take --json)
LOCAL_DATA = {"keys", "environments"}


def _share_options(group: typer.Typer, path: str) -> None:
    for command in group.registered_commands:
        name = command.name or (command.callback.__name__ if command.callback else "")
        top = path or name
        if command.callback is not None:
            command.callback = shared_options(
                command.callback,
                remote=top not in LOCAL,
                prints_data=top not in LOCAL or top in LOCAL_DATA,
            )
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _share_options(sub.typer_instance, path or sub.name or "")


_share_options(app, "")


if __name__ == "__main__":
    app()
