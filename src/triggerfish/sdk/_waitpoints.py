"""``client.waitpoints``: create, complete and read waitpoint tokens from outside a task."""

from __future__ import annotations

from typing import Any

from triggerfish.sdk._calls import Call, Namespace, faces
from triggerfish.sdk._models import Token, parse_token


def _create_token(
    *,
    timeout: str | float | None = None,
    tags: list[str] | None = None,
    idempotency_key: str | None = None,
) -> Call[Token]:
    """A token to hand to a task (``wait.for_token(id)``) or a person."""
    body = {"timeout": timeout, "tags": tags, "idempotencyKey": idempotency_key}
    return Call(
        "POST",
        "/api/v1/waitpoints/tokens",
        parse_token,
        json={k: v for k, v in body.items() if v is not None},
    )


def _complete_token(token_id: str, data: Any = None) -> Call[bool]:
    """Complete a token with ``data``; completing it again is accepted and changes nothing.

    Example::

        client.waitpoints.complete_token("waitpoint_…", {"approved": True})
    """
    return Call(
        "POST",
        f"/api/v1/waitpoints/tokens/{token_id}/complete",
        lambda b: bool(b.get("success")),
        json={"data": data},
    )


def _retrieve_token(token_id: str) -> Call[Token]:
    """A token's status and, once completed, its data."""
    return Call("GET", f"/api/v1/waitpoints/tokens/{token_id}", parse_token)


class Waitpoints(Namespace):
    """``client.waitpoints``: create, complete and read waitpoint tokens from outside a task."""

    create_token, create_token_async = faces(_create_token)
    complete_token, complete_token_async = faces(_complete_token)
    retrieve_token, retrieve_token_async = faces(_retrieve_token)
