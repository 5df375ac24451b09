"""Environment variables over HTTP: Trigger.dev's ``envvars.*`` paths (WIRE.md §8),
``/api/v1/projects/{ref}/envvars/{slug}…``, and the same calls for the caller's
own environment under ``/api/v1/envvars…`` (the Python client's paths).

A secret variable's value is never sent back (``<redacted>``); the task
processes of the environment get every value at the start of each attempt.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from triggerfish.api.deps import EngineDep, EnvDep
from triggerfish.api.serialize import iso
from triggerfish.api.validated import StrictJsonRoute
from triggerfish.engine.environments import Environment
from triggerfish.engine.envvars import EnvVar
from triggerfish.errors import UserError

router = APIRouter(tags=["environment variables"], route_class=StrictJsonRoute)

#: what list and retrieve show instead of a secret's value (Trigger.dev's word)
REDACTED = "<redacted>"
_SDK = "/api/v1/projects/{project_ref}/envvars/{slug}"
_OWN = "/api/v1/envvars"


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    value: str
    isSecret: bool = False


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: str
    #: Triggerfish: only on its own path, where PUT also creates
    isSecret: bool | None = None


class UploadBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    variables: dict[str, str]
    override: bool = False
    isSecret: bool = False
    #: Trigger.dev's preview-branch parents: taken like ``variables``, which win
    parentVariables: dict[str, str] | None = None


def _check_scope(env: Environment, project_ref: str, slug: str) -> None:
    """Trigger.dev's rule: the path names the key's own project and environment."""
    if project_ref != env.project_ref:
        raise UserError(
            f"projectRef: {project_ref!r} is not this key's project; it is {env.project_ref!r} "
            "(`triggerfish dev` prints it; set TRIGGER_PROJECT_REF to choose it)"
        )
    if slug != env.slug:
        raise UserError(f"slug: {slug!r} is not this key's environment; it is {env.slug!r}")


def var_object(var: EnvVar) -> dict[str, Any]:
    return {
        "name": var.name,
        "value": REDACTED if var.is_secret else var.value,
        "isSecret": var.is_secret,
    }


def _own_object(var: EnvVar) -> dict[str, Any]:
    return {**var_object(var), "createdAt": iso(var.created_at), "updatedAt": iso(var.updated_at)}


_SUCCESS = {"success": True}


# -- Trigger.dev's paths -------------------------------------------------------------


@router.get(_SDK)
async def list_vars(
    project_ref: str, slug: str, engine: EngineDep, env: EnvDep
) -> list[dict[str, Any]]:
    """Every variable of the environment, as a bare array; secrets redacted."""
    _check_scope(env, project_ref, slug)
    return [var_object(v) for v in await engine.envvars.all(env.id)]


@router.post(_SDK)
async def create_var(
    project_ref: str, slug: str, body: CreateBody, engine: EngineDep, env: EnvDep
) -> dict[str, bool]:
    """Add a variable; an existing name is refused (400): update it instead."""
    _check_scope(env, project_ref, slug)
    await engine.envvars.create(env.id, body.name, body.value, secret=body.isSecret)
    return _SUCCESS


@router.post(_SDK + "/import")
async def upload_vars(
    project_ref: str, slug: str, body: UploadBody, engine: EngineDep, env: EnvDep
) -> dict[str, bool]:
    """Add many variables at once; existing ones are replaced only with ``override``."""
    _check_scope(env, project_ref, slug)
    await _upload(engine, env, body)
    return _SUCCESS


@router.get(_SDK + "/{name}")
async def retrieve_var(
    project_ref: str, slug: str, name: str, engine: EngineDep, env: EnvDep
) -> dict[str, Any]:
    _check_scope(env, project_ref, slug)
    return var_object(await engine.envvars.get(env.id, env.slug, name))


@router.put(_SDK + "/{name}")
async def update_var(
    project_ref: str, slug: str, name: str, body: UpdateBody, engine: EngineDep, env: EnvDep
) -> dict[str, bool]:
    """Change a variable's value (404 if there is none); the next attempts get it."""
    _check_scope(env, project_ref, slug)
    await engine.envvars.update(env.id, env.slug, name, body.value)
    return _SUCCESS


@router.delete(_SDK + "/{name}")
async def delete_var(
    project_ref: str, slug: str, name: str, engine: EngineDep, env: EnvDep
) -> dict[str, bool]:
    _check_scope(env, project_ref, slug)
    await engine.envvars.delete(env.id, env.slug, name)
    return _SUCCESS


async def _upload(
    engine: EngineDep, env: Environment, body: UploadBody
) -> tuple[list[str], list[str]]:
    variables = {**(body.parentVariables or {}), **body.variables}
    if not variables:
        raise UserError("variables: nothing to import")
    return await engine.envvars.upload(
        env.id, variables, override=body.override, secret=body.isSecret
    )


# -- the caller's own environment (Triggerfish) ---------------------------------------


@router.get(_OWN)
async def own_list(engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """``{"environment": slug, "projectRef", "data": [variables]}``; secrets redacted."""
    return {
        "environment": env.slug,
        "projectRef": env.project_ref,
        "data": [_own_object(v) for v in await engine.envvars.all(env.id)],
    }


@router.post(_OWN + "/import")
async def own_upload(body: UploadBody, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    """Like Trigger.dev's import, answering which names were written and which kept."""
    written, kept = await _upload(engine, env, body)
    return {"success": True, "written": written, "kept": kept}


@router.get(_OWN + "/{name}")
async def own_retrieve(name: str, engine: EngineDep, env: EnvDep) -> dict[str, Any]:
    return _own_object(await engine.envvars.get(env.id, env.slug, name))


@router.put(_OWN + "/{name}")
async def own_set(name: str, body: UpdateBody, engine: EngineDep, env: EnvDep) -> dict[str, bool]:
    """Create or replace a variable (``isSecret`` defaults to false)."""
    await engine.envvars.create(env.id, name, body.value, secret=bool(body.isSecret), replace=True)
    return _SUCCESS


@router.delete(_OWN + "/{name}")
async def own_delete(name: str, engine: EngineDep, env: EnvDep) -> dict[str, bool]:
    await engine.envvars.delete(env.id, env.slug, name)
    return _SUCCESS
