"""Projects, environments and API keys: bootstrap, authentication, key management."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from triggerfish._domain.records import ApiKeyListing, ApiKeyRecord, CallerEnvironment
from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import to_datetime
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import AuthenticationError, ConflictError, PermissionDenied, UserError
from triggerfish.store import envs as env_store

#: what an attempt credential starts with (``tfa_<attempt id>.<signature>``)
ATTEMPT_CREDENTIAL_PREFIX = "tfa_"
_CREDENTIAL_PURPOSE = "attempt-credential"
#: the keyring purpose of the sealed copies of API keys
KEY_COPY_PURPOSE = "api-key-copy"
#: what a project ref may look like (Trigger.dev's are ``proj_`` + 20 lowercase alphanumerics)
_PROJECT_REF = re.compile(r"[A-Za-z0-9_-]{3,40}")
#: a run's statuses while its current attempt may act with its credential
_LIVE = (RunStatus.DEQUEUED.value, RunStatus.EXECUTING.value)
#: what an environment's name may be: it is part of every key (``tr_<slug>_…``)
SLUG = re.compile(r"[a-z0-9-]+")
MAX_SLUG = 32


@dataclass(frozen=True)
class AttemptScope:
    """The attempt whose credential made a request: its powers end with it."""

    attempt_id: str
    #: its run, where the store was asked (a frame checked by its signature alone has none)
    run_id: str | None = None


@dataclass(frozen=True)
class Environment:
    """Who is calling: an environment, through its API key or an attempt's credential."""

    id: str
    slug: str
    project_id: str
    project_ref: str
    #: set when a task process calls with its attempt credential
    attempt: AttemptScope | None = None
    #: set when a browser calls with a public access token: its scopes
    #: (``read:runs:run_…``, ``read:tags:…``, ``trigger:tasks:…``; engine/public_tokens.py)
    public: frozenset[str] | None = None

    @classmethod
    def of(cls, caller: CallerEnvironment, attempt: AttemptScope | None = None) -> Environment:
        """The caller the store found, acting through ``attempt``'s credential if given."""
        return cls(caller.id, caller.slug, caller.project_id, caller.project_ref, attempt)

    def require_key(self) -> None:
        """Refuse a caller that holds only an attempt credential (the worker's calls)."""
        if self.attempt is not None:
            raise PermissionDenied(
                "an attempt credential cannot act as a worker: use the environment's secret key"
            )


class Environments:
    #: how long a verified key is trusted without asking the store again: keeps
    #: the hot path to zero queries while revocation still takes effect quickly
    CACHE_SECONDS = 5.0

    def __init__(self, res: EngineResources) -> None:
        self.res = res
        self._cache: dict[str, tuple[float, Environment]] = {}
        self._slugs: tuple[float, list[str]] | None = None
        #: called after a key is revoked (the public tokens' opened keys)
        self.on_revoke: list[Any] = []

    async def bootstrap(self, project_name: str = "triggerfish") -> str:
        """Make sure the project and its dev and prod environments exist; its ref.

        ``ServerSettings.project_ref`` (``TRIGGER_PROJECT_REF``) names the
        project, so the official SDK's project-scoped paths
        (``/api/v1/projects/{ref}/…``) can use the ref its app already has.
        """
        ref = self.res.settings.project_ref
        if ref is not None and not _PROJECT_REF.fullmatch(ref):
            raise UserError(
                f"TRIGGER_PROJECT_REF: {ref!r} is not a project ref "
                "(3 to 40 letters, digits, _ or -, e.g. proj_abcdefghijklmnop)"
            )
        async with self.res.db.write() as conn:
            project = await env_store.ensure_project(
                conn, project_name, to_datetime(self.res.clock.now()), ref=ref
            )
        self._cache.clear()
        return project.ref

    def attempt_credential(self, attempt_id: str) -> str:
        """The credential a task process gets for ``attempt_id``.

        Derived from the attempt id with the server keyring, so nothing is
        stored and heartbeats do not change it; it is honoured while the
        attempt is its run's current attempt (see :meth:`authenticate`).
        """
        signature = self.res.keyring.sign(_CREDENTIAL_PURPOSE, attempt_id)
        return f"{ATTEMPT_CREDENTIAL_PREFIX}{attempt_id}.{signature}"

    def signed_attempt(self, credential: str) -> str | None:
        """The attempt id of a well-signed credential, else None (no store look-up)."""
        if not credential.startswith(ATTEMPT_CREDENTIAL_PREFIX):
            return None
        try:
            return self.attempt_of(credential)
        except AuthenticationError:
            return None

    def attempt_of(self, credential: str) -> str:
        """The attempt id of a well-signed credential; 401 for anything else."""
        attempt_id, _, signature = credential.removeprefix(ATTEMPT_CREDENTIAL_PREFIX).partition(".")
        if not attempt_id or not self.res.keyring.verify(
            _CREDENTIAL_PURPOSE, attempt_id, signature
        ):
            raise AuthenticationError("Invalid attempt credential")
        return attempt_id

    async def authenticate(self, key: str) -> Environment:
        """The caller behind ``key`` (an API key or an attempt credential); 401 if none."""
        if key.startswith(ATTEMPT_CREDENTIAL_PREFIX):
            return await self._authenticate_attempt(key)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self.res.db.read() as conn:
            caller = await env_store.environment_for_key(conn, key)
        if caller is None:
            self._cache.pop(key, None)
            raise AuthenticationError("Invalid API Key")
        env = Environment.of(caller)
        self._cache[key] = (time.monotonic() + self.CACHE_SECONDS, env)
        return env

    async def _authenticate_attempt(self, credential: str) -> Environment:
        # never cached: the credential must stop working the moment its attempt ends
        attempt_id = self.attempt_of(credential)
        async with self.res.db.read() as conn:
            caller = await env_store.environment_for_attempt(conn, attempt_id, _LIVE)
        if caller is None:
            raise AuthenticationError(
                f"attempt credential expired: attempt {attempt_id} is no longer its run's "
                "current attempt"
            )
        return Environment.of(caller, AttemptScope(attempt_id, caller.run_id))

    async def by_slug(self, slug: str) -> Environment:
        async with self.res.db.read() as conn:
            caller = await env_store.environment_by_slug(conn, slug)
            known = [] if caller is not None else await env_store.environment_slugs(conn)
        if caller is None:
            names = ", ".join(known) or "none"
            raise UserError(
                f"no environment {slug!r} (known: {names}); create it with "
                f"`triggerfish environments create {slug}`"
            )
        return Environment.of(caller)

    async def slugs(self) -> list[str]:
        """Every environment's slug (the dashboard's switcher), cached for ``CACHE_SECONDS``."""
        if self._slugs is None or self._slugs[0] < time.monotonic():
            async with self.res.db.read() as conn:
                found = await env_store.environment_slugs(conn)
            self._slugs = (time.monotonic() + self.CACHE_SECONDS, found)
        return list(self._slugs[1])

    async def create(self, slug: str) -> Environment:
        """A new environment of the project, with its own keys, runs and queues.

        ``slug`` is what keys carry (``tr_<slug>_…``): lower-case letters, digits
        and dashes. Creating one that exists is refused (409).
        """
        if not SLUG.fullmatch(slug) or len(slug) > MAX_SLUG:
            raise UserError(
                f"environment: {slug!r} is not a valid name; use lower-case letters, digits "
                f"and dashes ([a-z0-9-]+, at most {MAX_SLUG} characters), e.g. 'staging'"
            )
        now = to_datetime(self.res.clock.now())
        async with self.res.db.write() as conn:
            if await env_store.environment_by_slug(conn, slug) is not None:
                raise ConflictError(f"environment {slug!r} exists already")
            project = await env_store.ensure_project(conn, "triggerfish", now)
            await env_store.insert_environment(conn, project.id, slug, now)
        self._slugs = None  # the dashboard's switcher shows it at once
        return await self.by_slug(slug)

    async def all(self) -> list[tuple[Environment, int]]:
        """Every environment and how many active keys it has."""
        async with self.res.db.read() as conn:
            listed = await env_store.list_environments(conn)
        return [(Environment(e.id, e.slug, e.project_id, ""), keys) for e, keys in listed]

    async def create_key(self, slug: str, name: str) -> tuple[str, ApiKeyRecord]:
        """A new key of environment ``slug``: the key itself (shown once) and its record."""
        env = await self.by_slug(slug)
        async with self.res.db.write() as conn:
            return await env_store.create_key(
                conn, env.id, slug, name, to_datetime(self.res.clock.now()), self.seal_key
            )

    async def adopt_key(self, slug: str, key: str, name: str) -> None:
        env = await self.by_slug(slug)
        async with self.res.db.write() as conn:
            await env_store.store_known_key(
                conn, env.id, key, name, to_datetime(self.res.clock.now()), self.seal_key
            )

    def seal_key(self, key: str) -> str:
        """The copy of an API key kept to verify the public tokens it signs."""
        return self.res.keyring.encrypt(KEY_COPY_PURPOSE, key.encode())

    def unseal_key(self, sealed: str) -> str:
        return self.res.keyring.decrypt(KEY_COPY_PURPOSE, sealed).decode()

    async def list_keys(self) -> list[ApiKeyListing]:
        async with self.res.db.read() as conn:
            return await env_store.list_keys(conn)

    async def revoke_key(self, key_id: str) -> bool:
        async with self.res.db.write() as conn:
            done = await env_store.revoke_key(conn, key_id, to_datetime(self.res.clock.now()))
        self._cache.clear()
        for forget in self.on_revoke:
            forget()
        return done
