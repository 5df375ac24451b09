"""Public access tokens (WIRE.md §10): the claims the official SDK signs, and tokens
the server signs with the caller's key (engine/public_tokens.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from triggerfish._durations import parse_duration
from triggerfish.api.deps import EngineDep, EnvDep, bearer
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.errors import PermissionDenied, UserError

router = APIRouter(route_class=StrictJsonRoute)

#: a token's life when the request names none, in seconds (the SDK's default)
DEFAULT_LIFETIME = 15 * 60


@router.post("/api/v1/auth/jwt/claims", tags=["auth"])
async def jwt_claims(env: EnvDep) -> dict[str, Any]:
    """What the official SDK puts in the tokens it signs itself."""
    env.require_key()
    return {"sub": env.id, "pub": True}


class PublicTokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    scopes: list[str] = Field(min_length=1, max_length=100)
    expirationTime: str | int | None = None
    oneTimeUse: bool = False


@router.post("/api/v1/auth/public-tokens", tags=["auth"])
async def create_public_token(
    body: PublicTokenBody, request: Request, engine: EngineDep, env: EnvDep
) -> dict[str, str]:
    """A public access token signed with the caller's secret key."""
    env.require_key()
    key = bearer(request)
    if key is None:  # pragma: no cover (EnvDep has checked it)
        raise PermissionDenied("a secret key signs public tokens")
    lifetime = _lifetime(body.expirationTime, engine.res.clock.now())
    token = engine.public_tokens.sign(env, key, body.scopes, lifetime, one_time=body.oneTimeUse)
    return {"token": token}


def _lifetime(value: str | int | None, now: float) -> float:
    """Seconds from now: a duration (``"1h"``), or an epoch time in seconds (the
    SDK's ``expirationTime`` as a number)."""
    if value is None:
        return DEFAULT_LIFETIME
    if isinstance(value, int) and value > 10**9:
        return value - now
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise UserError(f"expirationTime: {exc}") from None
