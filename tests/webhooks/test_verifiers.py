"""The verifiers on their own: each source's signature, and any change to the body refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from triggerfish.verifiers import (
    BadOptions,
    GitHubVerifier,
    HmacSha256Verifier,
    SignatureInvalid,
    SlackVerifier,
    StandardWebhooksVerifier,
    Verifier,
    constant_time_equal,
    hmac_hex,
    register_verifier,
    verifier_for,
)

NOW = time.time()


def _slack(body: bytes, secret: str, at: float = NOW) -> dict[str, str]:
    stamp = str(int(at))
    sig = hmac_hex(secret, b"v0:" + stamp.encode() + b":" + body)
    return {"x-slack-request-timestamp": stamp, "x-slack-signature": f"v0={sig}"}


def test_slack_slash_commands_verify_and_become_slack_command() -> None:
    body = b"command=%2Fdeploy&text=prod&user_id=U1&channel_id=C1"
    headers = {**_slack(body, "sl"), "content-type": "application/x-www-form-urlencoded"}
    v = SlackVerifier()
    v.verify(headers, body, "sl", NOW)
    parsed = v.parse(headers, body)
    assert parsed.event_type == "slack.command" and parsed.delivery_id is None
    assert parsed.payload == {
        "command": "/deploy",
        "text": "prod",
        "user_id": "U1",
        "channel_id": "C1",
    }
    with pytest.raises(SignatureInvalid, match="tolerance"):
        v.verify(_slack(body, "sl", at=NOW - 600), body, "sl", NOW)
    with pytest.raises(SignatureInvalid):
        v.verify(headers, body + b"&x=1", "sl", NOW)


def test_slack_events_are_named_by_their_type_with_the_event_id() -> None:
    body = b'{"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention"}}'
    parsed = SlackVerifier().parse({"content-type": "application/json"}, body)
    assert (parsed.event_type, parsed.delivery_id) == ("slack.app_mention", "Ev1")


def test_standard_webhooks_signed_by_the_package_verify() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    body = b'{"type": "user.created", "id": 1}'
    signature = Webhook(secret).sign("msg_1", datetime.now(UTC), body)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }
    v = StandardWebhooksVerifier()
    v.verify(headers, body, secret, NOW)
    parsed = v.parse(headers, body)
    assert (parsed.event_type, parsed.delivery_id) == ("user.created", "msg_1")
    with pytest.raises(SignatureInvalid):
        v.verify(headers, body.replace(b"1", b"2"), secret, NOW)


def test_generic_hmac_takes_base64_and_refuses_bad_options() -> None:
    v = HmacSha256Verifier(header="X-Sig", encoding="base64")
    body = b"payload"
    sig = base64.b64encode(hmac.new(b"s", body, hashlib.sha256).digest()).decode()
    v.verify({"x-sig": sig}, body, "s", NOW)
    with pytest.raises(BadOptions, match=r"options\.encoding"):
        HmacSha256Verifier(encoding="rot13")
    with pytest.raises(BadOptions, match="source"):
        verifier_for("nope")


def test_a_verifier_users_add_is_found_by_its_source() -> None:
    @register_verifier
    class Acme(Verifier):
        source = "acme-test"
        signature_headers: ClassVar[tuple[str, ...]] = ("x-acme",)

        def verify(self, headers: Any, body: bytes, secret: str, now: float) -> None:
            if not constant_time_equal(headers.get("x-acme", ""), hmac_hex(secret, body)):
                raise SignatureInvalid("x-acme does not match")

    found = verifier_for("acme-test")
    assert isinstance(found, Acme)
    found.verify({"x-acme": hmac_hex("k", b"b")}, b"b", "k", NOW)


@given(
    body=st.binary(max_size=200), secret=st.text(min_size=1, max_size=40), flip=st.integers(0, 199)
)
def test_a_github_signature_holds_for_its_body_and_no_other(
    body: bytes, secret: str, flip: int
) -> None:
    v = GitHubVerifier()
    headers = {"x-hub-signature-256": "sha256=" + hmac_hex(secret, body)}
    v.verify(headers, body, secret, NOW)
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ 1]) + body[i + 1 :]
        with pytest.raises(SignatureInvalid):
            v.verify(headers, changed, secret, NOW)
