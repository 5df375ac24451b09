"""Projects, environments and their API keys (stored as SHA-256 hashes only)."""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import (
    ApiKeyListing,
    ApiKeyRecord,
    CallerEnvironment,
    EnvironmentRecord,
    ProjectRecord,
)
from triggerfish._ids import new_id
from triggerfish.store.tables import api_keys, attempts, environments, projects, runs

ENV_SLUGS = ("dev", "staging", "prod", "preview")
_KEY_ALPHABET = string.ascii_lowercase + string.digits


def hash_key(key: str) -> str:
    # Keys carry 160+ bits of randomness, so a fast hash is enough: there is
    # nothing to brute-force, and lookups stay one index probe per request.
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key(slug: str) -> str:
    return f"tr_{slug}_" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))


#: what authentication reads of the caller's environment
_CALLER_ENVIRONMENT = (
    environments.c.id,
    environments.c.slug,
    environments.c.project_id,
    projects.c.ref.label("project_ref"),
)


def _caller(row: Sequence[Any] | None) -> CallerEnvironment | None:
    return None if row is None else CallerEnvironment(*row)


async def ensure_project(
    conn: AsyncConnection,
    name: str,
    now: datetime,
    slugs: tuple[str, ...] = ("dev", "prod"),
    ref: str | None = None,
) -> ProjectRecord:
    """The (single) project, created with its environments on first use; ``ref``
    names it (Trigger.dev's project ref), else its id does."""
    row = (await conn.execute(select(projects).order_by(projects.c.created_at))).first()
    if row is None:
        pid = new_id("proj")
        await conn.execute(
            insert(projects).values(id=pid, ref=ref or pid, name=name, created_at=now)
        )
        row = (await conn.execute(select(projects).where(projects.c.id == pid))).one()
    elif ref and row.ref != ref:
        await conn.execute(update(projects).where(projects.c.id == row.id).values(ref=ref))
        row = (await conn.execute(select(projects).where(projects.c.id == row.id))).one()
    existing = {
        r.slug
        for r in await conn.execute(
            select(environments.c.slug).where(environments.c.project_id == row.id)
        )
    }
    for slug in slugs:
        if slug not in existing:
            await conn.execute(
                insert(environments).values(
                    id=new_id("env"), project_id=row.id, slug=slug, created_at=now
                )
            )
    return ProjectRecord(*row)


async def list_environments(conn: AsyncConnection) -> list[tuple[EnvironmentRecord, int]]:
    """Every environment with how many active keys it has, oldest first."""
    active = (
        select(api_keys.c.environment_id, func.count().label("active_keys"))
        .where(api_keys.c.revoked_at.is_(None))
        .group_by(api_keys.c.environment_id)
        .subquery()
    )
    stmt = (
        select(environments, func.coalesce(active.c.active_keys, 0).label("active_keys"))
        .outerjoin(active, active.c.environment_id == environments.c.id)
        .order_by(environments.c.created_at, environments.c.slug)
    )
    return [(EnvironmentRecord(*r[:-1]), int(r[-1])) for r in (await conn.execute(stmt)).all()]


async def insert_environment(
    conn: AsyncConnection, project_id: str, slug: str, now: datetime
) -> str:
    env_id = new_id("env")
    await conn.execute(
        insert(environments).values(id=env_id, project_id=project_id, slug=slug, created_at=now)
    )
    return env_id


async def environment_by_slug(conn: AsyncConnection, slug: str) -> CallerEnvironment | None:
    stmt = (
        select(*_CALLER_ENVIRONMENT)
        .join(projects, projects.c.id == environments.c.project_id)
        .where(environments.c.slug == slug)
    )
    return _caller((await conn.execute(stmt)).first())


async def create_key(
    conn: AsyncConnection,
    env_id: str,
    slug: str,
    name: str,
    now: datetime,
    seal: Callable[[str], str] | None = None,
) -> tuple[str, ApiKeyRecord]:
    """Make a key; returns the plain key (show it once) and its stored row.
    ``seal`` encrypts the copy kept to verify the key's JWTs."""
    key = generate_key(slug)
    kid = new_id("key")
    await conn.execute(
        insert(api_keys).values(
            id=kid,
            environment_id=env_id,
            key_hash=hash_key(key),
            display=key[: len(slug) + 8] + "…",
            name=name,
            created_at=now,
            key_sealed=seal(key) if seal is not None else None,
        )
    )
    row = (await conn.execute(select(api_keys).where(api_keys.c.id == kid))).one()
    return key, ApiKeyRecord(*row)


async def store_known_key(
    conn: AsyncConnection,
    env_id: str,
    key: str,
    name: str,
    now: datetime,
    seal: Callable[[str], str] | None = None,
) -> None:
    """Record a key generated elsewhere (the dev server's local key file)."""
    digest = hash_key(key)
    if (await conn.execute(select(api_keys.c.id).where(api_keys.c.key_hash == digest))).first():
        return
    slug = key.split("_")[1]
    await conn.execute(
        insert(api_keys).values(
            id=new_id("key"),
            environment_id=env_id,
            key_hash=digest,
            display=key[: len(slug) + 8] + "…",
            name=name,
            created_at=now,
            key_sealed=seal(key) if seal is not None else None,
        )
    )


async def environment_for_key(conn: AsyncConnection, key: str) -> CallerEnvironment | None:
    stmt = (
        select(*_CALLER_ENVIRONMENT)
        .join(api_keys, api_keys.c.environment_id == environments.c.id)
        .join(projects, projects.c.id == environments.c.project_id)
        .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None))
    )
    return _caller((await conn.execute(stmt)).first())


async def environment_for_attempt(
    conn: AsyncConnection, attempt_id: str, live: tuple[str, ...]
) -> CallerEnvironment | None:
    """The environment and run of ``attempt_id`` while it is its run's current
    attempt and the run's status is one of ``live``; None otherwise."""
    stmt = (
        select(*_CALLER_ENVIRONMENT, runs.c.id.label("run_id"))
        .select_from(attempts)
        .join(runs, runs.c.id == attempts.c.run_id)
        .join(environments, environments.c.id == runs.c.environment_id)
        .join(projects, projects.c.id == environments.c.project_id)
        .where(
            attempts.c.id == attempt_id,
            runs.c.current_attempt_id == attempt_id,
            runs.c.status.in_(live),
        )
    )
    return _caller((await conn.execute(stmt)).first())


async def list_keys(conn: AsyncConnection) -> list[ApiKeyListing]:
    """Every environment's keys, oldest first (their hashes and sealed copies stay here)."""
    stmt = (
        select(
            api_keys.c.id,
            api_keys.c.environment_id,
            api_keys.c.display,
            api_keys.c.name,
            api_keys.c.created_at,
            api_keys.c.revoked_at,
            environments.c.slug,
        )
        .join(environments, environments.c.id == api_keys.c.environment_id)
        .order_by(api_keys.c.created_at)
    )
    return [ApiKeyListing(*r) for r in (await conn.execute(stmt)).all()]


async def revoke_key(conn: AsyncConnection, key_id: str, now: datetime) -> bool:
    result = await conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(api_keys.c.id)
    )
    return result.first() is not None


async def environment_slugs(conn: AsyncConnection) -> list[str]:
    """Every environment's slug, oldest first."""
    stmt = select(environments.c.slug).order_by(environments.c.created_at, environments.c.slug)
    return [r[0] for r in await conn.execute(stmt)]


async def sealed_keys(conn: AsyncConnection, env_id: str) -> list[str]:
    """The sealed copies of an environment's keys not revoked (keys made before
    migration 0008 have none)."""
    stmt = select(api_keys.c.key_sealed).where(
        api_keys.c.environment_id == env_id,
        api_keys.c.revoked_at.is_(None),
        api_keys.c.key_sealed.is_not(None),
    )
    return [str(v) for v in (await conn.execute(stmt)).scalars()]


async def environment_by_id(conn: AsyncConnection, env_id: str) -> CallerEnvironment | None:
    stmt = (
        select(*_CALLER_ENVIRONMENT)
        .join(projects, projects.c.id == environments.c.project_id)
        .where(environments.c.id == env_id)
    )
    return _caller((await conn.execute(stmt)).first())


async def spend_token(conn: AsyncConnection, token_id: str, expires_at: float, now: float) -> bool:
    """Record a one-time token as used; False if it was already (and forget the
    expired ones)."""
    from sqlalchemy import delete

    from triggerfish.store.tables import public_token_uses as uses

    await conn.execute(delete(uses).where(uses.c.expires_at < now))
    if (await conn.execute(select(uses.c.token_id).where(uses.c.token_id == token_id))).first():
        return False
    await conn.execute(insert(uses).values(token_id=token_id, expires_at=expires_at))
    return True
