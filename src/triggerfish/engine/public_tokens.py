"""Public access tokens: short-lived JWTs a browser may hold, never a secret key.

They are what Trigger.dev's SDK makes (WIRE.md §10): HS256 signed with the
environment's secret key, ``iss`` ``https://id.trigger.dev``, ``aud``
``https://api.trigger.dev``, ``sub`` the environment id, ``pub: true``,
``scopes`` (``read:runs``, ``read:runs:run_…``, ``read:tags:<tag>``,
``read:batch:batch_…``, ``trigger:tasks:<id>``), ``exp``; one-time tokens
carry ``otu: true`` and are refused once spent.

The server signs the tokens it hands out (``POST /api/v1/auth/public-tokens``,
``auth.create_public_token``) with the caller's own key, and verifies any
token, also one the official SDK signed itself, against the environment's
keys: their sealed copies (``Environments.seal_key``, made when a key is
created) are opened with the keyring. A revoked key's tokens stop verifying;
keys created before migration 0008 have no copy, so tokens they sign are
refused (make a new key).

A public token only reads what its scopes name (the realtime routes check
them) and never writes: every other route refuses it as an unknown key.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import jwt

from triggerfish.engine.environments import Environment
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import AuthenticationError, PermissionDenied, UserError
from triggerfish.store import envs as env_store
from triggerfish.store.errors import DuplicateKey

ISSUER = "https://id.trigger.dev"
AUDIENCE = "https://api.trigger.dev"
#: the longest a token the server makes may live, in seconds
MAX_LIFETIME = 7 * 24 * 3600
#: scope actions a public token may carry
ACTIONS = ("read", "trigger", "batchTrigger", "write")


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def check_scopes(scopes: list[str]) -> None:
    if not scopes:
        raise UserError("scopes: name at least one scope, e.g. read:runs:run_…")
    for i, scope in enumerate(scopes):
        action, _, resource = scope.partition(":")
        if action not in ACTIONS or not resource:
            raise UserError(
                f"scopes[{i}]: expected action:resource[:id] with an action of "
                f"{', '.join(ACTIONS)}, got {scope!r}"
            )


class PublicTokens:
    #: seconds an environment's opened keys are kept (a revocation waits at most this)
    CACHE_SECONDS = 5.0

    def __init__(self, res: EngineResources, environments: Any) -> None:
        self.res = res
        self._environments = environments
        self._keys: dict[str, tuple[float, list[str]]] = {}

    def sign(
        self,
        env: Environment,
        key: str,
        scopes: list[str],
        expires_in: float,
        *,
        one_time: bool = False,
    ) -> str:
        """A token for ``env`` signed with ``key`` (the caller's own secret key)."""
        check_scopes(scopes)
        if not 0 < expires_in <= MAX_LIFETIME:
            raise UserError(
                f"expirationTime: expected at most {MAX_LIFETIME // 86400} days, "
                f"got {expires_in:g} s"
            )
        now = int(self.res.clock.now())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": env.id,
            "pub": True,
            "scopes": scopes,
            "iat": now,
            "exp": now + int(expires_in),
        }
        if one_time:
            claims["otu"] = True
            claims["jti"] = uuid.uuid4().hex
        return jwt.encode(claims, key, algorithm="HS256")

    async def verify(self, token: str) -> Environment:
        """The environment a valid public token is for, with its scopes; 401 otherwise."""
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            env_id = str(unverified["sub"])
        except (jwt.PyJWTError, KeyError, TypeError):
            raise AuthenticationError("Invalid public access token") from None
        claims: dict[str, Any] | None = None
        for key in await self._keys_of(env_id):
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["HS256"],
                    audience=AUDIENCE,
                    options={"require": ["exp", "sub"], "verify_aud": "aud" in unverified},
                    leeway=0,
                )
                break
            except jwt.ExpiredSignatureError:
                raise AuthenticationError("Public access token expired") from None
            except jwt.PyJWTError:
                continue
        if claims is None or claims.get("pub") is not True:
            raise AuthenticationError("Invalid public access token")
        scopes = claims.get("scopes")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise AuthenticationError("Invalid public access token: no scopes")
        if claims.get("otu") is True:
            await self._spend(token, claims)
        async with self.res.db.read() as conn:
            caller = await env_store.environment_by_id(conn, env_id)
        if caller is None:
            raise AuthenticationError("Invalid public access token")
        return Environment(
            caller.id, caller.slug, caller.project_id, caller.project_ref, public=frozenset(scopes)
        )

    async def _keys_of(self, env_id: str) -> list[str]:
        hit = self._keys.get(env_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self.res.db.read() as conn:
            sealed = await env_store.sealed_keys(conn, env_id)
        keys = [self._environments.unseal_key(s) for s in sealed]
        self._keys[env_id] = (time.monotonic() + self.CACHE_SECONDS, keys)
        return keys

    def forget_keys(self) -> None:
        """Drop the opened keys (a key was revoked)."""
        self._keys.clear()

    async def _spend(self, token: str, claims: dict[str, Any]) -> None:
        token_id = str(claims.get("jti") or hashlib.sha256(token.encode()).hexdigest())
        now = self.res.clock.now()
        try:
            async with self.res.db.write() as conn:
                fresh = await env_store.spend_token(conn, token_id[:64], float(claims["exp"]), now)
        except DuplicateKey:
            fresh = False
        if not fresh:
            raise AuthenticationError("Public access token already used (it was one-time)")


def require(env: Environment, *wanted: str) -> None:
    """Refuse a public token holding none of ``wanted`` (403); anything else passes."""
    if env.public is None:
        return
    if not env.public.intersection(wanted):
        raise PermissionDenied("Unauthorized: the public access token's scopes do not cover this")
