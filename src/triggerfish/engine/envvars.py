"""Environment variables per environment: validated, sealed at rest, given to attempts.

A value is sealed by the keyring (purpose ``envvar``, bound to its environment
and name) before it reaches the store, and opened only to answer the API and
to hand an attempt its environment (:meth:`EnvVars.for_attempts`). A change
applies to attempts that start after it, never to a running one.

A server that is alone on its PostgreSQL store (``Notifier.alone``: no
other server listens) hands claims the variables from a cache, since a read
per claim is a round trip on the path from trigger to start: every write goes
through this server, and empties the cache before it returns. With several
servers (or on SQLite, where a read is no round trip) every claim reads
afresh. A server that starts while another caches is counted within a second
(``PRESENCE_TTL``); meanwhile its writes reach the other through ``NOTIFY``,
and no entry is used after :data:`CACHE_SECONDS` anyway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from triggerfish._redact import PRIVATE_ENV_NAMES, task_environment
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import EnvVarNotFound, UserError
from triggerfish.store import envvars as store

_PURPOSE = "envvar"
#: a POSIX-ish variable name: what a shell and ``os.environ`` agree on
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
#: the largest value accepted, in bytes of UTF-8
MAX_VALUE_BYTES = 64 * 1024
#: names Triggerfish sets itself in a task process
_RESERVED_PREFIX = "TRIGGERFISH_"
#: the notifier key that tells every server "some environment's variables changed"
CHANGED_KEY = "envvars"
#: the longest a claim uses variables read earlier (a lost wake-up's bound)
CACHE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One variable with its value in the clear (secret or not: callers mask)."""

    name: str
    value: str
    is_secret: bool
    created_at: datetime
    updated_at: datetime


def check_name(name: str, field: str = "name") -> str:
    """``name`` if it may be set as an environment variable; a 400 naming ``field`` if not."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(
            f"{field}: {name!r} is not a valid variable name (letters, digits and _, "
            "not starting with a digit, at most 256 characters)"
        )
    if name in PRIVATE_ENV_NAMES or name.startswith(_RESERVED_PREFIX):
        raise UserError(
            f"{field}: {name!r} is reserved: task processes never get Triggerfish's keys, "
            "database URLs or TRIGGERFISH_* settings"
        )
    return name


def check_value(name: str, value: str, field: str = "value") -> str:
    if not isinstance(value, str):
        raise UserError(f"{field}: the value of {name!r} must be a string")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise UserError(f"{field}: the value of {name!r} is over {MAX_VALUE_BYTES} bytes")
    if "\x00" in value:
        raise UserError(f"{field}: the value of {name!r} contains a NUL character")
    if not task_environment({name: value}):
        raise UserError(
            f"{field}: the value of {name!r} is shaped like a Triggerfish API key, "
            "which task processes never get (they act with their attempt's credential)"
        )
    return value


class EnvVars:
    def __init__(self, res: EngineResources) -> None:
        self.res = res
        #: sealed value -> plaintext: opening a box costs a decryption, claims repeat it
        self._opened: dict[str, str] = {}
        #: env id -> (monotonic time read, variables in the clear)
        self._cached: dict[str, tuple[float, dict[str, str]]] = {}
        #: bumped on every change: a read that raced a write is not cached
        self._generation = 0
        self._changes = res.notifier.listener(CHANGED_KEY)

    def _changed(self) -> None:
        """After a write committed: forget what claims read, here and on other servers."""
        self._forget()
        self.res.notifier.notify_nowait(CHANGED_KEY)

    def _forget(self) -> None:
        self._generation += 1
        self._cached.clear()

    def _seal(self, env_id: str, name: str, value: str) -> str:
        # the environment and name travel inside the box, so a sealed value
        # copied to another row does not open as that row's value
        return self.res.keyring.encrypt(_PURPOSE, f"{env_id}\x00{name}\x00{value}".encode())

    def _open(self, env_id: str, name: str, box: str) -> str:
        plain = self._opened.get(box)
        if plain is None:
            owner, _, rest = self.res.keyring.decrypt(_PURPOSE, box).decode().partition("\x00")
            stored_name, _, plain = rest.partition("\x00")
            if (owner, stored_name) != (env_id, name):
                raise UserError(
                    f"environment variable {name!r}: its sealed value belongs elsewhere"
                )
            if len(self._opened) > 10_000:
                self._opened.clear()
            self._opened[box] = plain
        return plain

    async def all(self, env_id: str) -> list[EnvVar]:
        async with self.res.db.read() as conn:
            rows = await store.list_vars(conn, env_id)
        return [
            EnvVar(
                r.name,
                self._open(env_id, r.name, r.value_box),
                r.is_secret,
                r.created_at,
                r.updated_at,
            )
            for r in rows
        ]

    async def get(self, env_id: str, env_slug: str, name: str) -> EnvVar:
        async with self.res.db.read() as conn:
            row = await store.get_var(conn, env_id, name)
        if row is None:
            raise EnvVarNotFound(name, env_slug)
        return EnvVar(
            row.name,
            self._open(env_id, name, row.value_box),
            row.is_secret,
            row.created_at,
            row.updated_at,
        )

    async def create(
        self, env_id: str, name: str, value: str, *, secret: bool = False, replace: bool = False
    ) -> bool:
        """Store a variable; without ``replace`` an existing name is refused (400)."""
        check_name(name)
        check_value(name, value)
        now = self.res.clock.utcnow()
        box = self._seal(env_id, name, value)
        async with self.res.db.write() as conn:
            written = await store.insert_var(conn, env_id, name, box, secret, now, replace=replace)
        self._changed()
        if not written:
            raise UserError(
                f"name: environment variable {name!r} already exists; update it instead"
            )
        return True

    async def update(self, env_id: str, env_slug: str, name: str, value: str) -> None:
        check_value(name, value)
        box = self._seal(env_id, name, value)
        async with self.res.db.write() as conn:
            found = await store.update_value(conn, env_id, name, box, self.res.clock.utcnow())
        self._changed()
        if not found:
            raise EnvVarNotFound(name, env_slug)

    async def delete(self, env_id: str, env_slug: str, name: str) -> None:
        async with self.res.db.write() as conn:
            found = await store.delete_var(conn, env_id, name)
        self._changed()
        if not found:
            raise EnvVarNotFound(name, env_slug)

    async def upload(
        self,
        env_id: str,
        variables: Mapping[str, str],
        *,
        override: bool = False,
        secret: bool = False,
    ) -> tuple[list[str], list[str]]:
        """Store many variables in one transaction: (written, kept as they were).

        Every name and value is checked before anything is stored; an existing
        variable is replaced only with ``override``.
        """
        for name, value in variables.items():
            check_name(name, f"variables.{name}")
            check_value(name, value, f"variables.{name}")
        now = self.res.clock.utcnow()
        written: list[str] = []
        kept: list[str] = []
        async with self.res.db.write() as conn:
            for name, value in variables.items():
                box = self._seal(env_id, name, value)
                if await store.insert_var(conn, env_id, name, box, secret, now, replace=override):
                    written.append(name)
                else:
                    kept.append(name)
        self._changed()
        return written, kept

    async def for_attempts(self, env_id: str) -> dict[str, str]:
        """The variables an attempt starting now gets, in the clear."""
        if self._changes.is_set():  # another server changed some: take the next wake-up first
            self._changes = self.res.notifier.listener(CHANGED_KEY)
            self._forget()
        alone = self.res.notifier.alone()
        hit = self._cached.get(env_id) if alone else None
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return dict(hit[1])
        generation = self._generation
        async with self.res.db.read() as conn:
            rows = await store.sealed_values(conn, env_id)
        values = self.opened(env_id, rows)
        if alone and generation == self._generation:
            self._cached[env_id] = (now, values)
        return dict(values)

    def opened(self, env_id: str, rows: Iterable[tuple[str, str]]) -> dict[str, str]:
        return {name: self._open(env_id, name, box) for name, box in rows}
