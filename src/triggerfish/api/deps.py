"""Request dependencies: the engine and the caller's environment."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.errors import AuthenticationError


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_engine(request: Request) -> Engine:
    # async on purpose: FastAPI runs a plain ``def`` dependency in a thread pool,
    # a thread hop on every request
    return engine_of(request)


async def current_environment(request: Request) -> Environment:
    """The environment of the bearer key; 401 when missing, unknown or revoked."""
    # reads the engine itself rather than through ``get_engine``: each resolved
    # sub-dependency costs FastAPI tens of microseconds on every request
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise AuthenticationError(
            "Invalid API Key: send `Authorization: Bearer <secret key>` (TRIGGERFISH_SECRET_KEY)"
        )
    return await engine_of(request).environments.authenticate(key.strip())


async def worker_environment(request: Request) -> Environment:
    """The environment of a worker's call: its secret key, never an attempt credential (403)."""
    env = await current_environment(request)
    env.require_key()
    return env


EngineDep = Annotated[Engine, Depends(get_engine)]
EnvDep = Annotated[Environment, Depends(current_environment)]
#: the worker API's caller: a task process's attempt credential is refused
WorkerEnvDep = Annotated[Environment, Depends(worker_environment)]
