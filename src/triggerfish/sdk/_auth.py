"""``client.auth``: public access tokens for browsers, never the secret key.

Example::

    token = client.auth.create_public_token(
        scopes={"read": {"runs": [handle.id], "tags": ["user:42"]}}, expiration="1h")
    # the browser: new EventSource(`${api}/api/v1/realtime/runs/${id}?token=${token}`)

    trigger = client.auth.create_trigger_token("send-email", expiration="10m")
    # one use: the browser triggers send-email once with `Authorization: Bearer <trigger>`
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from triggerfish.sdk._calls import Call, Namespace, faces

#: scopes' resource names as Trigger.dev spells them in a token (``read:batch:…``)
_RESOURCE = {"runs": "runs", "tags": "tags", "batches": "batch", "tasks": "tasks"}


def scope_strings(scopes: Mapping[str, Mapping[str, Sequence[str] | bool]]) -> list[str]:
    """``{"read": {"runs": ["run_1"], "tags": ["t"]}}`` → ``["read:runs:run_1", "read:tags:t"]``;
    ``True`` in place of a list means every one (``read:runs``)."""
    out: list[str] = []
    for action, resources in scopes.items():
        for resource, ids in resources.items():
            name = _RESOURCE.get(resource)
            if name is None:
                raise ValueError(
                    f"scopes[{action!r}]: unknown resource {resource!r}; "
                    f"expected one of {', '.join(_RESOURCE)}"
                )
            if ids is True:
                out.append(f"{action}:{name}")
            elif isinstance(ids, bool):
                continue
            else:
                out += [f"{action}:{name}:{i}" for i in ids]
    return out


def _create_public_token(
    *,
    scopes: Mapping[str, Mapping[str, Sequence[str] | bool]],
    expiration: str | int = "15m",
) -> Call[str]:
    """A public access token (a JWT) reading only what ``scopes`` names, for
    ``expiration`` (``"1h"``, or seconds). Hand it to a browser: the realtime
    routes accept it, also as ``?token=``; it can never write."""
    body: dict[str, Any] = {"scopes": scope_strings(scopes), "expirationTime": expiration}
    return Call("POST", "/api/v1/auth/public-tokens", lambda b: str(b["token"]), json=body)


def _create_trigger_token(task_id: str, *, expiration: str | int = "15m") -> Call[str]:
    """A one-time token that triggers ``task_id`` once (``POST
    /api/v1/tasks/{task_id}/trigger`` with it as the bearer)."""
    body = {
        "scopes": [f"trigger:tasks:{task_id}"],
        "expirationTime": expiration,
        "oneTimeUse": True,
    }
    return Call("POST", "/api/v1/auth/public-tokens", lambda b: str(b["token"]), json=body)


class Auth(Namespace):
    """``client.auth``: public access tokens."""

    create_public_token, create_public_token_async = faces(_create_public_token)
    create_trigger_token, create_trigger_token_async = faces(_create_trigger_token)
