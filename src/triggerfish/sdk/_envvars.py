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
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from triggerfish.sdk._calls import Call, DefaultNamespace, Namespace, declared_face, faces

if TYPE_CHECKING:
    from triggerfish.sdk._client import Triggerfish


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
    """The ``envvars`` namespace, sent by the default client.

    Every call has an ``…_async`` form and takes ``client=`` to use another
    :class:`~triggerfish.Triggerfish` than the default one. Each face's signature
    is declared for type checkers and checked against its definition on import.
    """

    # before `list`, which hides the builtin in this class's body from here on
    @staticmethod
    @declared_face(_list, is_async=True)
    async def list_async(*, client: Triggerfish | None = None) -> list[EnvVar]:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_list)
    def list(*, client: Triggerfish | None = None) -> list[EnvVar]:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_retrieve)
    def retrieve(name: str, *, client: Triggerfish | None = None) -> EnvVar:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_retrieve, is_async=True)
    async def retrieve_async(name: str, *, client: Triggerfish | None = None) -> EnvVar:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_set)
    def set(
        name: str, value: str, *, secret: bool = False, client: Triggerfish | None = None
    ) -> None:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_set, is_async=True)
    async def set_async(
        name: str, value: str, *, secret: bool = False, client: Triggerfish | None = None
    ) -> None:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_delete)
    def delete(name: str, *, client: Triggerfish | None = None) -> None:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_delete, is_async=True)
    async def delete_async(name: str, *, client: Triggerfish | None = None) -> None:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_upload)
    def upload(
        variables: Mapping[str, str],
        *,
        override: bool = False,
        secret: bool = False,
        client: Triggerfish | None = None,
    ) -> Uploaded:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_upload, is_async=True)
    async def upload_async(
        variables: Mapping[str, str],
        *,
        override: bool = False,
        secret: bool = False,
        client: Triggerfish | None = None,
    ) -> Uploaded:
        raise NotImplementedError  # replaced by the face


#: ``envvars.list/retrieve/set/delete/upload`` for the default client's environment
envvars = EnvironmentVariables()
