"""``triggerfish db …`` and ``triggerfish keys …``: commands that talk to the database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from triggerfish.cli._common import (
    admin_settings,
    console,
    fail,
    run_async,
    set_result,
    with_engine,
)

if TYPE_CHECKING:
    from triggerfish.engine import Engine

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="Secret API keys (stored hashed; shown once).", no_args_is_help=True)


@db_app.command("migrate")
def migrate() -> None:
    """Create or upgrade the schema of DATABASE_URL to this version."""

    from triggerfish.engine import Engine
    from triggerfish.store.db import Database
    from triggerfish.store.migrate import upgrade

    settings = admin_settings()

    async def go() -> str:
        db = Database(settings.database_url)
        try:
            await upgrade(db)
            engine = Engine.create(settings)
            try:
                await engine.environments.bootstrap()
            finally:
                await engine.close()
            return db.display_url
        finally:
            await db.dispose()

    console.print(f"schema of {run_async(go)} is up to date")


@keys_app.command("create")
def create_key(
    env: Annotated[
        str, typer.Option("--env", "-e", help="environment (dev, prod, or one you created)")
    ] = "dev",
    name: Annotated[str, typer.Option(help="a label to recognise the key by")] = "default",
) -> None:
    """Create a secret key for an environment and print it (the only time it is shown)."""

    async def go(engine: Engine) -> tuple[str, str]:
        key, record = await engine.environments.create_key(env, name)
        return key, record.id

    key, key_id = run_async(lambda: with_engine(go))
    set_result({"id": key_id, "environment": env, "name": name, "key": key})
    console.print(f"[bold]{key}[/]")
    console.print(f"id {key_id}")
    console.print("[dim]Only a hash of this key is stored: it will not be shown again.[/]")


@keys_app.command("list")
def list_keys() -> None:
    """Keys of every environment (their prefixes only)."""

    async def go(engine: Engine) -> list[tuple[str, ...]]:
        return [
            (
                k.id,
                k.environment_slug,
                k.display,
                k.name,
                str(k.created_at)[:19],
                str(k.revoked_at)[:19] if k.revoked_at else "",
            )
            for k in await engine.environments.list_keys()
        ]

    table = Table(header_style="bold")
    columns = ("ID", "Env", "Key", "Name", "Created", "Revoked")
    for column in columns:
        table.add_column(column)
    rows = run_async(lambda: with_engine(go))
    for row in rows:
        table.add_row(*row)
    fields = ("id", "environment", "display", "name", "createdAt", "revokedAt")
    set_result({"data": [dict(zip(fields, row, strict=True)) for row in rows]})
    console.print(table)


@keys_app.command("revoke")
def revoke_key(key_id: str) -> None:
    """Revoke a key; requests with it are refused within seconds."""

    async def go(engine: Engine) -> bool:
        return await engine.environments.revoke_key(key_id)

    if not run_async(lambda: with_engine(go)):
        raise fail(f"no active key with id {key_id!r} (see `triggerfish keys list`)")
    console.print(f"revoked {key_id}")


envs_app = typer.Typer(
    help="Environments (dev, prod, and any you create), each with its own keys and runs.",
    no_args_is_help=True,
)


@envs_app.command("create")
def create_environment(
    slug: Annotated[str, typer.Argument(help="name: lower-case letters, digits, dashes")],
) -> None:
    """Create an environment; then `triggerfish keys create --env SLUG` gives it a key."""

    async def go(engine: Engine) -> str:
        return (await engine.environments.create(slug)).id

    env_id = run_async(lambda: with_engine(go))
    set_result({"id": env_id, "slug": slug})
    console.print(f"created environment [bold]{slug}[/] ({env_id})")
    console.print(f"[dim]next: triggerfish keys create --env {slug}[/]")


@envs_app.command("list")
def list_environments() -> None:
    """Every environment and how many active keys it has."""

    async def go(engine: Engine) -> list[tuple[str, str, int]]:
        return [(e.slug, e.id, keys) for e, keys in await engine.environments.all()]

    rows = run_async(lambda: with_engine(go))
    set_result({"data": [{"slug": s, "id": i, "activeKeys": k} for s, i, k in rows]})
    table = Table(header_style="bold")
    for column in ("Environment", "ID", "Active keys"):
        table.add_column(column)
    for slug, env_id, keys in rows:
        table.add_row(slug, env_id, str(keys))
    console.print(table)


@envs_app.command("retention")
def environment_retention(
    slug: Annotated[str, typer.Argument(help="the environment")] = "dev",
    days: Annotated[
        int | None,
        typer.Option(min=1, max=36_500, help="keep finished runs this many days from now on"),
    ] = None,
    default: Annotated[
        bool, typer.Option("--default", help="go back to the server's default retention")
    ] = False,
) -> None:
    """Show, or set with --days, how long an environment keeps finished runs.

    Runs older than that are deleted by the servers' maintenance loop with their
    logs, journal, attempts and trace, and so are the environment's events,
    webhook deliveries and alert deliveries of that age.
    """
    if days is not None and default:
        raise fail("pass --days N or --default, not both")

    async def go(engine: Engine) -> tuple[int, bool]:
        env = await engine.environments.by_slug(slug)
        if days is not None or default:
            await engine.maintenance.set_retention(env.id, days)
        return await engine.maintenance.retention(env.id)

    kept, own = run_async(lambda: with_engine(go))
    set_result({"environment": slug, "days": kept, "default": not own})
    whose = "its own" if own else "the server's default, TRIGGERFISH_RETENTION_DAYS"
    console.print(f"environment [bold]{slug}[/] keeps finished runs {kept} days ({whose})")
