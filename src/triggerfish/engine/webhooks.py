"""Incoming webhooks: a signed delivery to ``/webhooks/{id}`` becomes an event.

An endpoint names its source's verifier (``triggerfish.verifiers``) and keeps
the source's signing secret sealed under the server keyring. A delivery is
verified on its raw bytes before anything reads it; a bad signature is
refused and counted, nothing else kept. A verified delivery becomes the event
the source names (``github.push``, ``stripe.invoice.paid``) or the endpoint's
fixed name, with the provider's delivery id as the event id: a redelivery is
the same event, so it starts nothing new (``Events.send``). Every verified
delivery is recorded with its headers (less anything secret), its body, and
the runs it started.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from triggerfish._domain.records import WebhookDeliveryRecord, WebhookEndpointRecord
from triggerfish._domain.times import to_datetime
from triggerfish._ids import new_id
from triggerfish.engine.events import Events
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import (
    PayloadValidationError,
    UserError,
    WebhookNotFound,
    WebhookSignatureInvalid,
    WebhookUnnamed,
)
from triggerfish.store import webhooks as store
from triggerfish.verifiers import BadOptions, SignatureInvalid, verifier_for

#: the keyring purpose webhook secrets are sealed for
SECRET_PURPOSE = "webhook-secret"
_EVENT_ID_MAX = 128
#: header names never recorded with a delivery, beside each source's signature headers
_PRIVATE_HEADERS = {"authorization", "proxy-authorization", "cookie", "x-api-key"}


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpointRecord
    #: the signing secret, shown once (the store keeps it sealed)
    secret: str


@dataclass(frozen=True)
class Received:
    #: None when the delivery was a source's handshake (see ``reply``)
    delivery: WebhookDeliveryRecord | None
    #: the delivery's event id was seen before: nothing new started
    is_redelivery: bool
    #: the answer a source's handshake expects (Slack's URL verification)
    reply: dict[str, Any] | None = None


def load_verifier_modules(names: str) -> None:
    """Import the modules that register custom verifiers (``a.b,c.d``)."""
    for name in filter(None, (n.strip() for n in names.split(","))):
        importlib.import_module(name)


def _event_id(delivery_id: str) -> str:
    if len(delivery_id) <= _EVENT_ID_MAX:
        return delivery_id
    return "sha256:" + hashlib.sha256(delivery_id.encode()).hexdigest()


def _recorded_headers(headers: Mapping[str, str], hidden: set[str]) -> dict[str, str]:
    return {
        k: v
        for k, v in headers.items()
        if k not in hidden
        and k not in _PRIVATE_HEADERS
        and "secret" not in k
        and "token" not in k
        and "signature" not in k
    }


class Webhooks:
    def __init__(self, res: EngineResources, events: Events) -> None:
        self.res = res
        self.events = events

    async def create(
        self,
        env_id: str,
        source: str,
        *,
        secret: str | None = None,
        event_name: str | None = None,
        options: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> CreatedEndpoint:
        """A new endpoint; without ``secret`` one is generated (and returned, once)."""
        try:
            verifier = verifier_for(source, options)
        except BadOptions as exc:
            raise UserError(str(exc)) from None
        if event_name is not None and not 1 <= len(event_name) <= 256:
            raise UserError("eventName: 1 to 256 characters")
        if secret is not None and not secret.strip():
            raise UserError("secret: must not be empty (leave it out to have one generated)")
        secret = secret or f"whsec_{secrets.token_urlsafe(32)}"
        now = self.res.clock.now()
        endpoint = WebhookEndpointRecord(
            id=new_id("webhook", now),
            environment_id=env_id,
            source=source,
            event_name=event_name,
            options=verifier.options,
            secret_sealed=self.res.keyring.encrypt(SECRET_PURPOSE, secret.encode()),
            description=description,
            rejected_count=0,
            last_rejected_at=None,
            created_at=to_datetime(now),
        )
        async with self.res.db.write() as conn:
            await store.insert_endpoint(conn, endpoint)
        return CreatedEndpoint(endpoint, secret)

    async def endpoints(self, env_id: str) -> list[WebhookEndpointRecord]:
        async with self.res.db.read() as conn:
            return await store.list_endpoints(conn, env_id)

    async def get(self, env_id: str, endpoint_id: str) -> WebhookEndpointRecord:
        async with self.res.db.read() as conn:
            found = await store.get_endpoint(conn, endpoint_id, env_id)
        if found is None:
            raise WebhookNotFound(endpoint_id)
        return found

    async def delete(self, env_id: str, endpoint_id: str) -> None:
        async with self.res.db.write() as conn:
            if not await store.delete_endpoint(conn, env_id, endpoint_id):
                raise WebhookNotFound(endpoint_id)

    async def deliveries(
        self, env_id: str, endpoint_id: str, limit: int = 50
    ) -> list[WebhookDeliveryRecord]:
        await self.get(env_id, endpoint_id)
        async with self.res.db.read() as conn:
            return await store.list_deliveries(conn, env_id, endpoint_id, limit)

    async def receive(self, endpoint_id: str, headers: Mapping[str, str], body: bytes) -> Received:
        """Verify a delivery and send its event. ``headers`` have lower-case names.

        Raises ``WebhookNotFound`` (404), ``WebhookSignatureInvalid`` (401,
        counted on the endpoint), ``UserError`` for a body that is not JSON or
        a form (400) or names no event (422), and ``PayloadValidationError``
        (422) when a subscriber's model refuses the payload (recorded).
        """
        async with self.res.db.read() as conn:
            endpoint = await store.get_endpoint(conn, endpoint_id)
        if endpoint is None:
            raise WebhookNotFound(endpoint_id)
        verifier = verifier_for(endpoint.source, endpoint.options)
        secret = self.res.keyring.decrypt(SECRET_PURPOSE, endpoint.secret_sealed).decode()
        now = self.res.clock.now()
        try:
            verifier.verify(headers, body, secret, now)
        except SignatureInvalid as exc:
            async with self.res.db.write() as conn:
                await store.count_rejection(conn, endpoint.id, to_datetime(now))
            raise WebhookSignatureInvalid(endpoint.id, str(exc)) from None
        try:
            parsed = verifier.parse(headers, body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"body: neither JSON nor a form ({exc})") from None
        if parsed.reply is not None:
            return Received(None, False, parsed.reply)
        name = endpoint.event_name or parsed.event_type
        if not name:
            raise WebhookUnnamed(
                f"event: the {endpoint.source} delivery names no event type; create the "
                "endpoint with a fixed event name (--event-name)"
            )
        given = parsed.delivery_id
        event_id = _event_id(given) if given else new_id("event", now)
        rejected: PayloadValidationError | None = None
        try:
            sent = await self.events.send(endpoint.environment_id, name, parsed.payload, event_id)
            run_ids, errors, cached, event_id = sent.run_ids, sent.errors, sent.is_cached, sent.id
        except PayloadValidationError as exc:
            rejected = exc
            run_ids, errors, cached = [], [{"field": exc.field, "message": str(exc)}], False
        outcome = "redelivery" if cached else "rejected-payload" if rejected else "first"
        delivery = WebhookDeliveryRecord(
            id=new_id("delivery", now),
            endpoint_id=endpoint.id,
            environment_id=endpoint.environment_id,
            event_id=event_id,
            event_name=name,
            headers=_recorded_headers(headers, verifier.all_signature_headers()),
            payload=parsed.payload,
            run_ids=run_ids,
            errors=errors,
            outcome=outcome,
            created_at=to_datetime(now),
        )
        json.dumps(delivery.payload)  # parsed JSON or form fields: always serialisable
        async with self.res.db.write() as conn:
            await store.insert_delivery(conn, delivery)
        if rejected is not None:
            raise rejected
        return Received(delivery, cached)
