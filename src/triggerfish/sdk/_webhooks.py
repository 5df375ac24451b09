"""``client.webhooks``: endpoints that turn signed deliveries into events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from triggerfish.sdk._calls import Call, Namespace, faces


class WebhookEndpoint(BaseModel):
    """An incoming-webhook URL. ``secret`` is set only in the answer to ``create``."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    url: str
    source: str
    event_name: str | None = Field(default=None, alias="eventName")
    options: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    #: deliveries refused for their signature
    rejected_count: int = Field(default=0, alias="rejectedCount")
    last_rejected_at: datetime | None = Field(default=None, alias="lastRejectedAt")
    created_at: datetime | None = Field(default=None, alias="createdAt")
    secret: str | None = None


class WebhookDelivery(BaseModel):
    """A verified delivery: the event it became and the runs it started."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    endpoint_id: str = Field(alias="endpointId")
    event_id: str = Field(alias="eventId")
    event_name: str = Field(alias="eventName")
    #: ``first``, ``redelivery`` (nothing started) or ``rejected-payload``
    outcome: str
    headers: dict[str, str] = Field(default_factory=dict)
    payload: Any = None
    runs: list[str] = Field(default_factory=list)
    errors: list[dict[str, str]] = Field(default_factory=list)
    created_at: datetime | None = Field(default=None, alias="createdAt")


def _create(
    source: str,
    *,
    secret: str | None = None,
    event_name: str | None = None,
    options: dict[str, Any] | None = None,
    description: str | None = None,
) -> Call[WebhookEndpoint]:
    """Create an endpoint for ``source`` (``github``, ``stripe``, ``slack``,
    ``standard-webhooks``, ``hmac-sha256`` or a registered one).

    Without ``secret`` one is generated; the answer carries it this once.
    ``event_name`` fixes the event name (for sources that send none).

    Example::

        hook = client.webhooks.create("github", secret="s3cret")
        print(hook.url)  # paste into the repository's webhook settings
    """
    body: dict[str, Any] = {"source": source, "options": options or {}}
    for key, value in (("secret", secret), ("eventName", event_name), ("description", description)):
        if value is not None:
            body[key] = value
    return Call("POST", "/api/v1/webhooks", WebhookEndpoint.model_validate, json=body)


def _list() -> Call[list[WebhookEndpoint]]:
    """The environment's endpoints, oldest first, with their rejection counts."""
    return Call(
        "GET",
        "/api/v1/webhooks",
        lambda body: [WebhookEndpoint.model_validate(e) for e in body["data"]],
    )


def _retrieve(endpoint_id: str) -> Call[WebhookEndpoint]:
    """One endpoint."""
    return Call("GET", f"/api/v1/webhooks/{endpoint_id}", WebhookEndpoint.model_validate)


def _delete(endpoint_id: str) -> Call[dict[str, Any]]:
    """Remove an endpoint: its URL answers 404 from now on."""
    return Call("DELETE", f"/api/v1/webhooks/{endpoint_id}", dict)


def _deliveries(endpoint_id: str, *, limit: int = 50) -> Call[list[WebhookDelivery]]:
    """An endpoint's verified deliveries, newest first."""
    return Call(
        "GET",
        f"/api/v1/webhooks/{endpoint_id}/deliveries",
        lambda body: [WebhookDelivery.model_validate(d) for d in body["data"]],
        params={"limit": limit},
    )


class Webhooks(Namespace):
    """``client.webhooks``: create, list and remove endpoints; read their deliveries."""

    create, create_async = faces(_create)
    list, list_async = faces(_list)
    retrieve, retrieve_async = faces(_retrieve)
    delete, delete_async = faces(_delete)
    deliveries, deliveries_async = faces(_deliveries)
