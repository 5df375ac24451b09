"""Dashboard users: passwords (argon2id), signed session cookies, CSRF tokens, login limits.

A session is ``<user id>.<issued at>.<signature>``, signed by the keyring for
its own purpose, so nothing is stored per session. It is honoured for
``SESSION_SECONDS`` and only if issued after the user's
``sessions_valid_after``, which signing out and a password change move on:
both end every session of the user. The CSRF token of a form is the session
signed for another purpose.

Example::

    user_id = await engine.users.create("ada", "correct horse battery")
    user = await engine.users.sign_in("ada", "correct horse battery", client="10.0.0.7")
    cookie = engine.users.issue_session(user)
    assert (await engine.users.session_user(cookie)).username == "ada"
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from triggerfish._domain.records import UserRecord
from triggerfish._domain.times import to_datetime
from triggerfish._ids import new_id
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import UserError
from triggerfish.store import users as user_store
from triggerfish.store.errors import DuplicateKey

SESSION_PURPOSE = "dashboard-session"
CSRF_PURPOSE = "dashboard-csrf"
#: how long a sign-in lasts
SESSION_SECONDS = 7 * 24 * 3600
#: failed sign-ins allowed per user name and per client within ``LOGIN_WINDOW`` seconds
LOGIN_ATTEMPTS = 5
LOGIN_WINDOW = 60.0
MIN_PASSWORD = 8
#: the pseudo-user of a server started by ``triggerfish dev``
DEV_USER_ID = "dev"
_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,128}")


class TooManyAttempts(UserError):
    status_code = 429

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed sign-ins: try again in {int(retry_after) + 1} s")


@dataclass(frozen=True)
class User:
    id: str
    username: str


class LoginLimiter:
    """Failed sign-ins in a sliding window, per key (user name, client address).

    Kept in the server's memory: each server of a deployment counts its own.
    """

    def __init__(self, attempts: int = LOGIN_ATTEMPTS, window: float = LOGIN_WINDOW) -> None:
        self.attempts, self.window = attempts, window
        self._failures: dict[str, deque[float]] = {}

    def check(self, keys: list[str], now: float) -> None:
        for key in keys:
            failures = self._failures.get(key)
            if not failures:
                continue
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) >= self.attempts:
                raise TooManyAttempts(failures[0] + self.window - now)

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 10_000:  # forget quiet keys rather than grow without end
            for key in [k for k, v in self._failures.items() if not v or v[-1] < now - self.window]:
                del self._failures[key]


def _micros(epoch: float) -> int:
    return round(epoch * 1_000_000)


def _after_now(epoch: float) -> float:
    """Where ``sessions_valid_after`` goes to end every session issued up to now."""
    return (_micros(epoch) + 1) / 1_000_000


class Users:
    def __init__(self, res: EngineResources) -> None:
        self.res = res
        self._hasher = PasswordHasher()
        self.limiter = LoginLimiter()

    async def create(self, username: str, password: str) -> str:
        """A new user; 422 naming the field for a bad name, a short password or a taken name."""
        if not _USERNAME.fullmatch(username):
            raise UserError("username: 1-128 letters, digits, '.', '_', '@' or '-'")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        now = self.res.clock.now()
        user = UserRecord(
            id=new_id("user"),
            username=username,
            password_hash=hashed,
            created_at=to_datetime(now),
            sessions_valid_after=now,
        )
        try:
            async with self.res.db.write() as conn:
                await user_store.create_user(conn, user)
        except DuplicateKey:
            raise UserError(f"username: {username!r} exists already") from None
        return user.id

    async def set_password(self, username: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        hashed = await asyncio.to_thread(self._hasher.hash, password)
        async with self.res.db.write() as conn:
            user = await user_store.user_by_name(conn, username)
            if user is None:
                raise UserError(f"username: no user {username!r}")
            await user_store.set_password(conn, user.id, hashed, _after_now(self.res.clock.now()))

    async def list(self) -> list[User]:
        async with self.res.db.read() as conn:
            return [User(u.id, u.username) for u in await user_store.list_users(conn)]

    async def sign_in(self, username: str, password: str, *, client: str) -> User | None:
        """The user, if the password is right; None if not; 429 after too many failures."""
        keys = [f"user:{username}", f"client:{client}"]
        self.limiter.check(keys, time.monotonic())
        async with self.res.db.read() as conn:
            stored = await user_store.user_by_name(conn, username)
        ok = False
        if stored is not None:
            try:
                ok = await asyncio.to_thread(self._hasher.verify, stored.password_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
        if not ok or stored is None:
            self.limiter.failed(keys, time.monotonic())
            return None
        return User(stored.id, stored.username)

    def issue_session(self, user: User) -> str:
        # in microseconds, so a sign-in right after a sign-out is newer than it
        message = f"{user.id}.{_micros(self.res.clock.now())}"
        return f"{message}.{self.res.keyring.sign(SESSION_PURPOSE, message)}"

    async def session_user(self, session: str, *, dev: bool = False) -> User | None:
        """The user a session cookie belongs to, while it is valid; else None.

        ``dev``: the server was started by ``triggerfish dev``, whose pseudo-user
        needs no row.
        """
        message, _, signature = session.rpartition(".")
        user_id, _, issued_text = message.partition(".")
        if not user_id or not self.res.keyring.verify(SESSION_PURPOSE, message, signature):
            return None
        if not issued_text.isdigit():
            return None
        issued = int(issued_text)
        if issued + SESSION_SECONDS * 1_000_000 < _micros(self.res.clock.now()):
            return None
        if user_id == DEV_USER_ID:
            return User(DEV_USER_ID, "dev") if dev else None
        async with self.res.db.read() as conn:
            stored = await user_store.user_by_id(conn, user_id)
        if stored is None or issued < _micros(stored.sessions_valid_after):
            return None
        return User(stored.id, stored.username)

    async def sign_out(self, user: User) -> None:
        """End every session of ``user`` (the cookie alone cannot be taken back)."""
        if user.id == DEV_USER_ID:
            return
        async with self.res.db.write() as conn:
            await user_store.end_sessions(conn, user.id, _after_now(self.res.clock.now()))

    def csrf_token(self, session: str) -> str:
        return self.res.keyring.sign(CSRF_PURPOSE, session)

    def csrf_ok(self, session: str, token: str) -> bool:
        return bool(token) and self.res.keyring.verify(CSRF_PURPOSE, session, token)
