"""Webhook signature verifiers: how a delivery proves where it came from.

A :class:`Verifier` checks a delivery's signature against the endpoint's
secret, then says which event it is (``github.push``) and which delivery
(GitHub's ``X-GitHub-Delivery``, Stripe's event id), so a redelivery is
recognised. Built in, by source name:

=====================  ===========================================================
``github``             ``X-Hub-Signature-256: sha256=<hex HMAC of the body>``
``stripe``             ``Stripe-Signature: t=<ts>,v1=<hex HMAC of "t.body">``, tolerance
``slack``              ``X-Slack-Signature: v0=<hex HMAC of "v0:ts:body">``, tolerance
``standard-webhooks``  ``webhook-id/-timestamp/-signature`` (the ``standardwebhooks`` package)
``hmac-sha256``        a configurable header holding the hex (or base64) HMAC of the body
=====================  ===========================================================

A verifier is a small class: subclass :class:`Verifier`, give it a ``source``
name, implement :meth:`Verifier.verify`, and :func:`register_verifier` it in
the server's process (``TRIGGERFISH_WEBHOOK_VERIFIERS=mypkg.verifiers``
imports that module when the server starts)::

    @register_verifier
    class Acme(Verifier):
        source = "acme"
        signature_headers = ("x-acme-signature",)

        def verify(self, headers, body, secret, now):
            expected = hmac_hex(secret, body)
            if not constant_time_equal(headers.get("x-acme-signature", ""), expected):
                raise SignatureInvalid("x-acme-signature does not match the body")

Headers arrive with lower-case names. Only the standard library signs here;
a verifier never sees the server keyring, only the endpoint's own secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

__all__ = [
    "GitHubVerifier",
    "HmacSha256Verifier",
    "Parsed",
    "SignatureInvalid",
    "SlackVerifier",
    "StandardWebhooksVerifier",
    "StripeVerifier",
    "Verifier",
    "constant_time_equal",
    "hmac_hex",
    "known_sources",
    "register_verifier",
    "verifier_for",
]


class SignatureInvalid(Exception):
    """The delivery's signature is missing, malformed, stale or does not match."""


class BadOptions(ValueError):
    """A verifier's options are unknown or of the wrong type (names the option)."""


def hmac_hex(secret: str | bytes, message: bytes) -> str:
    """The hex HMAC-SHA256 of ``message`` under ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def constant_time_equal(given: str, expected: str) -> bool:
    """Compare two signatures without leaking where they differ."""
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Parsed:
    """What a verified delivery says about itself."""

    #: the event name it becomes (``github.push``); None: the endpoint's fixed name
    event_type: str | None
    #: the provider's id of this delivery (the event id); None: none given
    delivery_id: str | None
    #: the body as JSON data (form bodies become a dict of fields)
    payload: Any
    #: a handshake the source expects answered instead of an event (Slack's
    #: ``url_verification`` challenge): the answer's JSON body
    reply: dict[str, Any] | None = None


def parse_body(headers: Mapping[str, str], body: bytes) -> Any:
    """The body as data: JSON, or a form's fields; ValueError when it is neither."""
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        fields = urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True)
        form = {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
        # GitHub's form deliveries and Slack's interactive payloads wrap JSON in a field
        if set(form) == {"payload"} and isinstance(form["payload"], str):
            return json.loads(form["payload"])
        return form
    if not body.strip():
        return None
    return json.loads(body)


class Verifier:
    """Checks a source's signatures. Subclasses set ``source`` and override :meth:`verify`.

    ``options`` are the per-endpoint settings the verifier accepts (stored
    with the endpoint, shown in listings, never secret); unknown ones are
    refused when the endpoint is created.
    """

    #: the name endpoints are created with (``--source``)
    source: ClassVar[str] = ""
    #: headers that carry signatures: kept out of recorded deliveries
    signature_headers: ClassVar[tuple[str, ...]] = ()
    #: the options this verifier accepts, with their defaults
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise BadOptions(f"options.{unknown[0]}: {self.source} takes no such option ({known})")
        self.options = {**self.defaults, **options}

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        """Raise :class:`SignatureInvalid` unless ``body`` was signed with ``secret``."""
        raise NotImplementedError

    def parse(self, headers: Mapping[str, str], body: bytes) -> Parsed:
        """The event type, delivery id and payload of a verified delivery."""
        return Parsed(None, None, parse_body(headers, body))

    def all_signature_headers(self) -> set[str]:
        return {h.lower() for h in self.signature_headers}


def _within(timestamp: str, now: float, tolerance: float, what: str) -> None:
    try:
        at = float(timestamp)
    except ValueError:
        raise SignatureInvalid(f"{what}: not a timestamp ({timestamp!r})") from None
    if abs(now - at) > tolerance:
        raise SignatureInvalid(
            f"{what} is {abs(now - at):.0f}s away from now; the tolerance is {tolerance:.0f}s "
            "(a replayed or delayed delivery, or a clock off)"
        )


class GitHubVerifier(Verifier):
    """GitHub: ``X-Hub-Signature-256``; the event from ``X-GitHub-Event`` (+ ``action``)."""

    source = "github"
    signature_headers = ("x-hub-signature-256", "x-hub-signature")

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        given = headers.get("x-hub-signature-256", "")
        if not given.startswith("sha256="):
            raise SignatureInvalid("X-Hub-Signature-256: missing or not sha256=<hex>")
        if not constant_time_equal(given[7:], hmac_hex(secret, body)):
            raise SignatureInvalid("X-Hub-Signature-256 does not match the body")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Parsed:
        kind = headers.get("x-github-event")
        return Parsed(
            f"github.{kind}" if kind else None,
            headers.get("x-github-delivery"),
            parse_body(headers, body),
        )


class StripeVerifier(Verifier):
    """Stripe: ``Stripe-Signature: t=…,v1=…``; the event from the body's ``type``."""

    source = "stripe"
    signature_headers = ("stripe-signature",)
    defaults: ClassVar[dict[str, Any]] = {"tolerance": 300}

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        parts: dict[str, list[str]] = {}
        for item in headers.get("stripe-signature", "").split(","):
            key, _, value = item.strip().partition("=")
            parts.setdefault(key, []).append(value)
        if "t" not in parts or "v1" not in parts:
            raise SignatureInvalid("Stripe-Signature: missing t= or v1=")
        stamp = parts["t"][0]
        _within(stamp, now, float(self.options["tolerance"]), "Stripe-Signature t=")
        expected = hmac_hex(secret, stamp.encode() + b"." + body)
        if not any(constant_time_equal(v, expected) for v in parts["v1"]):
            raise SignatureInvalid("Stripe-Signature: no v1 signature matches the body")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Parsed:
        payload = parse_body(headers, body)
        event = payload if isinstance(payload, dict) else {}
        kind = event.get("type")
        return Parsed(f"stripe.{kind}" if kind else None, event.get("id"), payload)


class SlackVerifier(Verifier):
    """Slack signing secrets: ``X-Slack-Signature`` over ``v0:<timestamp>:<body>``.

    Events API deliveries become ``slack.<event type>`` (id: ``event_id``);
    slash commands become ``slack.command`` (no id: each is new).
    """

    source = "slack"
    signature_headers = ("x-slack-signature",)
    defaults: ClassVar[dict[str, Any]] = {"tolerance": 300}

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        stamp = headers.get("x-slack-request-timestamp", "")
        given = headers.get("x-slack-signature", "")
        if not stamp or not given.startswith("v0="):
            raise SignatureInvalid("X-Slack-Signature / X-Slack-Request-Timestamp missing")
        _within(stamp, now, float(self.options["tolerance"]), "X-Slack-Request-Timestamp")
        expected = hmac_hex(secret, b"v0:" + stamp.encode() + b":" + body)
        if not constant_time_equal(given[3:], expected):
            raise SignatureInvalid("X-Slack-Signature does not match the body")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Parsed:
        payload = parse_body(headers, body)
        data = payload if isinstance(payload, dict) else {}
        if "command" in data:
            return Parsed("slack.command", None, payload)
        if data.get("type") == "url_verification":
            return Parsed(None, None, None, reply={"challenge": data.get("challenge")})
        event = data.get("event")
        kind = event.get("type") if isinstance(event, dict) else data.get("type")
        return Parsed(f"slack.{kind}" if kind else None, data.get("event_id"), payload)


class StandardWebhooksVerifier(Verifier):
    """Standard Webhooks (Svix and others): ``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``, checked by the maintained ``standardwebhooks`` package.

    The secret is the provider's ``whsec_…`` value. The event is the body's
    ``type``; the delivery id is ``webhook-id``.
    """

    source = "standard-webhooks"
    signature_headers = ("webhook-signature",)

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError

        try:
            Webhook(secret).verify(body, dict(headers), json_parse=False)
        except WebhookVerificationError as exc:
            raise SignatureInvalid(f"standard webhooks: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise SignatureInvalid(f"standard webhooks: the secret is not base64 ({exc})") from None

    def parse(self, headers: Mapping[str, str], body: bytes) -> Parsed:
        payload = parse_body(headers, body)
        kind = payload.get("type") if isinstance(payload, dict) else None
        return Parsed(kind, headers.get("webhook-id"), payload)


class HmacSha256Verifier(Verifier):
    """Any source that sends an HMAC-SHA256 of the body in a header.

    Options: ``header`` (default ``x-signature``), ``prefix`` stripped from its
    value (e.g. ``sha256=``), ``encoding`` (``hex`` or ``base64``), ``id_header``
    (the delivery id, if the source sends one) and ``event_header`` (its event
    type; otherwise the endpoint's fixed event name).
    """

    source = "hmac-sha256"
    defaults: ClassVar[dict[str, Any]] = {
        "header": "x-signature",
        "prefix": "",
        "encoding": "hex",
        "id_header": None,
        "event_header": None,
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        for name in ("header", "prefix"):
            if not isinstance(self.options[name], str):
                raise BadOptions(f"options.{name}: a string is expected")
        if not self.options["header"]:
            raise BadOptions("options.header: the signature header's name is required")
        if self.options["encoding"] not in ("hex", "base64"):
            raise BadOptions("options.encoding: hex or base64")

    def all_signature_headers(self) -> set[str]:
        return {str(self.options["header"]).lower()}

    def verify(self, headers: Mapping[str, str], body: bytes, secret: str, now: float) -> None:
        header = str(self.options["header"]).lower()
        prefix = str(self.options["prefix"])
        given = headers.get(header, "")
        if not given or not given.startswith(prefix):
            raise SignatureInvalid(f"{header}: missing, or without the prefix {prefix!r}")
        digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
        expected = digest.hex() if self.options["encoding"] == "hex" else _b64(digest)
        if not constant_time_equal(given[len(prefix) :], expected):
            raise SignatureInvalid(f"{header} does not match the body")

    def parse(self, headers: Mapping[str, str], body: bytes) -> Parsed:
        id_header, event_header = self.options["id_header"], self.options["event_header"]
        return Parsed(
            headers.get(str(event_header).lower()) if event_header else None,
            headers.get(str(id_header).lower()) if id_header else None,
            parse_body(headers, body),
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_VERIFIERS: dict[str, type[Verifier]] = {}
V = TypeVar("V", bound=type[Verifier])


def register_verifier(cls: V) -> V:
    """Make ``cls`` available as ``source=cls.source`` (a class decorator)."""
    if not cls.source:
        raise ValueError(f"{cls.__name__}: a verifier needs a `source` name")
    _VERIFIERS[cls.source] = cls
    return cls


def known_sources() -> list[str]:
    return sorted(_VERIFIERS)


def verifier_for(source: str, options: Mapping[str, Any] | None = None) -> Verifier:
    """The verifier of ``source`` with an endpoint's ``options``.

    Raises :class:`BadOptions` naming the field for an unknown source or option.
    """
    cls = _VERIFIERS.get(source)
    if cls is None:
        raise BadOptions(f"source: unknown source {source!r} (known: {', '.join(known_sources())})")
    return cls(**dict(options or {}))


for _builtin in (
    GitHubVerifier,
    StripeVerifier,
    SlackVerifier,
    StandardWebhooksVerifier,
    HmacSha256Verifier,
):
    register_verifier(_builtin)
