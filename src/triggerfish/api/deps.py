"""Request dependencies: the engine and the caller's environment."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.errors import AuthenticationError


async def get_engine(request: Request) -> Engine:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a thread pool,
    # a thread hop on every request
    engine: Engine = request.app.state.engine
    return engine


async def current_environment(
    request: Request, engine: Annotated[Engine, Depends(get_engine)]
) -> Environment:
    """The environment of the bearer key; 401 when missing, unknown or revoked."""
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError(
            "Invalid API Key: send `Authorization: Bearer <secret key>` (TRIGGERFISH_SECRET_KEY)"
        )
    return await engine.environments.authenticate(key.strip())


EngineDep = Annotated[Engine, Depends(get_engine)]
EnvDep = Annotated[Environment, Depends(current_environment)]
