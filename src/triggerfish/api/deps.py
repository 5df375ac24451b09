"""Request dependencies: the engine and the caller's environment."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from triggerfish.engine import Engine
from triggerfish.engine.environments import Environment
from triggerfish.errors import ENVIRONMENT_HEADER, AuthenticationError, EnvironmentMismatch


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
    env = await engine_of(request).environments.authenticate(key.strip())
    check_asked_environment(request.headers.get(ENVIRONMENT_HEADER), env)
    return env


def check_asked_environment(asked: str | None, env: Environment) -> None:
    """A request that names its environment (``--env``, ``env=``) is refused (403)
    when the key is of another one."""
    if asked is not None and asked != env.slug:
        raise EnvironmentMismatch(asked, env.slug)


async def worker_environment(request: Request) -> Environment:
    """The environment of a worker's call: its secret key, never an attempt credential (403)."""
    env = await current_environment(request)
    env.require_key()
    return env


def bearer(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


async def reader_environment(request: Request) -> Environment:
    """The caller of a route a public access token may read (the realtime routes):
    a secret key or a JWT in ``Authorization``, or a JWT in the ``token`` query
    parameter (browsers' ``EventSource`` sends no headers; a secret key there is
    refused, and access logs redact the parameter). Scopes are checked by the route."""
    from triggerfish.engine.public_tokens import looks_like_jwt

    engine = engine_of(request)
    token = bearer(request)
    if token is None:
        query_token = request.query_params.get("token")
        if query_token is not None:
            if not looks_like_jwt(query_token):
                raise AuthenticationError(
                    "token: only a public access token (a JWT) may travel in the URL, "
                    "never a secret key"
                )
            token = query_token
    if token is not None and looks_like_jwt(token):
        env = await engine.public_tokens.verify(token)
        check_asked_environment(request.headers.get(ENVIRONMENT_HEADER), env)
        return env
    return await current_environment(request)


async def trigger_environment(request: Request) -> Environment:
    """The caller of a trigger: a secret key, or a public token whose scopes
    include triggering this task (``trigger:tasks:<id>``; a one-time one is spent)."""
    from triggerfish.engine.public_tokens import looks_like_jwt, require

    token = bearer(request)
    if token is not None and looks_like_jwt(token):
        env = await engine_of(request).public_tokens.verify(token)
        task_id = request.path_params.get("task_id", "")
        require(env, f"trigger:tasks:{task_id}", "trigger:tasks")
        check_asked_environment(request.headers.get(ENVIRONMENT_HEADER), env)
        return env
    return await current_environment(request)


EngineDep = Annotated[Engine, Depends(get_engine)]
#: a trigger's caller: a secret key or a trigger-scoped public token
TriggerEnvDep = Annotated[Environment, Depends(trigger_environment)]
#: a secret key, an attempt credential or a public access token (check its scopes)
ReaderDep = Annotated[Environment, Depends(reader_environment)]
EnvDep = Annotated[Environment, Depends(current_environment)]
#: the worker API's caller: a task process's attempt credential is refused
WorkerEnvDep = Annotated[Environment, Depends(worker_environment)]
