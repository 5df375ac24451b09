"""``envvars``: the environment variables task processes of an environment get.

Each attempt starts with the variables as they are when it is claimed; a
change applies to the next attempt, never to a running one. Values are
sealed at rest on the server; a secret's value is never sent back
(``"<redacted>"``).

Example::

    from triggerfish import envvars
    envvars.set("TRIGGER_CALLBACK_SECRET", "…", secret=True)
    envvars.upload({"API_URL": "https://api.example.com", "REGION": "eu"})
    [v.name for v in envvars.list()]   # -> ["API_URL", "REGION", "TRIGGER_CALLBACK_SECRET"]
    envvars.delete("REGION")
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from triggerfish.sdk._calls import Call, DefaultNamespace, Namespace, default_methods, faces


class EnvVar(BaseModel):
    """One variable; ``value`` is ``"<redacted>"`` for a secret."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: str
    value: str
    is_secret: bool = Field(alias="isSecret")
    created_at: datetime | None = Field(default=None, alias="createdAt")
    updated_at: datetime | None = Field(default=None, alias="updatedAt")


class Uploaded(BaseModel):
    """What :func:`upload` did: names written, and names kept as they were."""

    written: list[str]
    kept: list[str]


def _path(name: str) -> str:
    return f"/api/v1/envvars/{quote(name, safe='')}"


def _list() -> Call[list[EnvVar]]:
    """Every variable of the client's environment, by name (secrets redacted)."""
    return Call("GET", "/api/v1/envvars", lambda b: [EnvVar.model_validate(v) for v in b["data"]])


def _retrieve(name: str) -> Call[EnvVar]:
    """One variable (404 :class:`~triggerfish.errors.ApiError` if there is none)."""
    return Call("GET", _path(name), EnvVar.model_validate)


def _set(name: str, value: str, *, secret: bool = False) -> Call[None]:
    """Create or replace a variable; ``secret=True`` keeps its value out of every answer."""
    return Call("PUT", _path(name), lambda _: None, json={"value": value, "isSecret": secret})


def _delete(name: str) -> Call[None]:
    """Remove a variable (404 if there is none)."""
    return Call("DELETE", _path(name), lambda _: None)


def _upload(
    variables: Mapping[str, str], *, override: bool = False, secret: bool = False
) -> Call[Uploaded]:
    """Add many variables at once; existing ones are replaced only with ``override``."""
    body: dict[str, Any] = {"variables": dict(variables), "override": override, "isSecret": secret}
    return Call("POST", "/api/v1/envvars/import", Uploaded.model_validate, json=body)


class EnvVars(Namespace):
    """``client.envvars``: the variables of the client's environment."""

    list, list_async = faces(_list)
    retrieve, retrieve_async = faces(_retrieve)
    set, set_async = faces(_set)
    delete, delete_async = faces(_delete)
    upload, upload_async = faces(_upload)


class EnvironmentVariables(DefaultNamespace):
    """The ``envvars`` namespace, sent by the default client (every call has ``…_async``)."""

    list, list_async = default_methods(_list)
    retrieve, retrieve_async = default_methods(_retrieve)
    set, set_async = default_methods(_set)
    delete, delete_async = default_methods(_delete)
    upload, upload_async = default_methods(_upload)


#: ``envvars.list/retrieve/set/delete/upload`` for the default client's environment
envvars = EnvironmentVariables()
