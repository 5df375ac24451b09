"""``triggerfish server`` and ``triggerfish worker``: the production processes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from triggerfish import _otel
from triggerfish._heap import settle_after_startup
from triggerfish.cli._common import console, fail, port_is_free, run_async
from triggerfish.sdk._client import DEFAULT_API_URL, env_setting
from triggerfish.worker.discovery import DiscoveryError, ProjectConfig


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def server(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 3030,
) -> None:
    """Run an API server against DATABASE_URL (run `triggerfish db migrate` first)."""
    # imported here: a worker process never loads the server, the store or the web stack
    from triggerfish.cli._serve import make_server
    from triggerfish.config import ServerSettings
    from triggerfish.engine import Engine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not port_is_free(host, port):
        raise fail(f"port {port} on {host} is taken; choose another with --port")
    _otel.configure("triggerfish-server")  # OTEL_EXPORTER_OTLP_* (the otel extra)
    settings = ServerSettings()
    if settings.server_secret is None:
        raise fail(
            "set TRIGGERFISH_SERVER_SECRET: the keyring every server of this store shares "
            "(make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )

    async def go() -> None:
        engine = Engine.create(settings)
        await engine.start()  # refuses an unmigrated database, naming the fix
        srv = make_server(engine, host, port, log_level="info")
        settle_after_startup()
        stop = asyncio.Event()
        _stop_on_signals(stop)
        serving = asyncio.create_task(srv.serve())
        console.print(f"Triggerfish server on http://{host}:{port} ({engine.res.db.display_url})")
        try:
            await asyncio.wait(
                [serving, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            srv.should_exit = True
            await serving
        finally:
            await engine.close()

    run_async(go)


def worker(
    api_url: Annotated[
        str,
        typer.Option(
            envvar="TRIGGERFISH_API_URL",
            help="server URL, or several of one database comma-separated: the worker "
            "moves to the next at once when its server goes away",
        ),
    ] = DEFAULT_API_URL,
    concurrency: Annotated[int, typer.Option(min=1, help="attempts run at once")] = 4,
    dirs: Annotated[
        list[str] | None, typer.Option("--dir", help="task folders (default: pyproject)")
    ] = None,
    project: Annotated[Path, typer.Option(help="project root")] = Path("."),
    name: Annotated[str | None, typer.Option(help="name shown for this worker")] = None,
    version: Annotated[
        str | None,
        typer.Option(
            envvar="TRIGGERFISH_WORKER_VERSION",
            help="deployed version (default: hash of the task files)",
        ),
    ] = None,
    grace_period: Annotated[
        float,
        typer.Option(help="seconds runs get to finish on SIGTERM (a second SIGTERM: none)"),
    ] = 30,
    skip_broken_files: Annotated[
        bool,
        typer.Option(
            "--skip-broken-files",
            help="serve the tasks of the files that import; log the others (dev does this)",
        ),
    ] = False,
    socket: Annotated[
        bool,
        typer.Option(
            envvar="TRIGGERFISH_WORKER_SOCKET",
            help="talk to the server over one WebSocket (--no-socket: HTTP requests only)",
        ),
    ] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="TRIGGERFISH_WORKER_METRICS_PORT",
            help="serve the worker's Prometheus /metrics on this port",
        ),
    ] = None,
) -> None:
    """Run a worker: it needs only the server URL and TRIGGERFISH_SECRET_KEY, no database."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    key = env_setting("SECRET_KEY")
    if not key:
        raise fail(
            "set TRIGGERFISH_SECRET_KEY (or TRIGGER_SECRET_KEY) to the environment's secret key"
        )
    _otel.configure("triggerfish-worker")
    # imported here: every other command (and the server) starts without the worker
    from triggerfish.worker.supervisor import Worker, WorkerOptions

    try:
        config = ProjectConfig.load(project, dirs)
    except DiscoveryError as exc:
        raise fail(str(exc)) from None
    config = dataclasses.replace(config, skip_broken=skip_broken_files)
    options = WorkerOptions(
        api_url=api_url,
        secret_key=key,
        concurrency=concurrency,
        name=name,
        version=version,
        grace_period=grace_period,
        socket=socket,
        metrics_port=metrics_port,
    )

    async def go() -> None:
        w = Worker(config, options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, w.stop)
        try:
            await w.run()
        except DiscoveryError as exc:
            raise fail(str(exc)) from None

    run_async(go)
