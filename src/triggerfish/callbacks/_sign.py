"""How a callback is signed and checked: the one definition both sides share.

Three schemes, chosen by the receiving app:

- ``bearer``: ``Authorization: Bearer <secret>`` (CodeCourier's ``/trigger/callback``);
- ``header``: the secret in a header of its own (Ever Works' ``x-trigger-secret``);
- ``hmac``: the secret never travels. ``x-trigger-timestamp`` holds the epoch
  seconds, ``x-trigger-nonce`` a random value new for each request (a retry
  too), and ``x-trigger-signature`` is ``sha256=`` + the hex HMAC-SHA256 of
  ``"<timestamp>.<nonce>.<METHOD>.<path?query>."`` followed by the body's
  bytes. The receiver refuses a stale timestamp and a nonce it has already
  seen within the tolerance (replay protection).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Literal

Scheme = Literal["bearer", "header", "hmac"]
SCHEMES: tuple[Scheme, ...] = ("bearer", "header", "hmac")
#: where a task finds the callback secret when none is passed
SECRET_ENV_NAMES = ("TRIGGERFISH_CALLBACK_SECRET", "TRIGGER_CALLBACK_SECRET")
DEFAULT_HEADER = "x-trigger-secret"
TIMESTAMP_HEADER = "x-trigger-timestamp"
SIGNATURE_HEADER = "x-trigger-signature"
NONCE_HEADER = "x-trigger-nonce"


class CallbackRejected(Exception):
    """A callback's credential is missing, wrong, stale or replayed (answer 401)."""

    status_code = 401


def secret_from_environment(secret: str | None) -> str:
    """``secret``, else the first of :data:`SECRET_ENV_NAMES` that is set."""
    if secret:
        return secret
    for name in SECRET_ENV_NAMES:
        value = os.environ.get(name)
        if value:
            return value
    raise ValueError(
        f"no callback secret: pass secret=... or set {SECRET_ENV_NAMES[0]} "
        "(the same value the receiving app verifies with)"
    )


def check_scheme(scheme: str) -> Scheme:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: {scheme!r} is not one of {', '.join(SCHEMES)}")
    return scheme


def hmac_signature(
    secret: str, timestamp: str, nonce: str, method: str, target: str, body: bytes
) -> str:
    """``sha256=<hex>`` over ``"<timestamp>.<nonce>.<METHOD>.<target>."`` + ``body``."""
    message = f"{timestamp}.{nonce}.{method.upper()}.{target}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(
    scheme: Scheme,
    secret: str,
    method: str,
    target: str,
    body: bytes,
    *,
    header: str = DEFAULT_HEADER,
    now: float | None = None,
) -> dict[str, str]:
    """The headers that sign one request (``target`` is its path and query)."""
    if scheme == "bearer":
        return {"authorization": f"Bearer {secret}"}
    if scheme == "header":
        return {header: secret}
    stamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(16)
    return {
        TIMESTAMP_HEADER: stamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: hmac_signature(secret, stamp, nonce, method, target, body),
    }


class CallbackVerifier:
    """The receiving app's check of a task's callback (constant-time comparisons).

    Example (any framework; see :func:`~triggerfish.callbacks.verify_callback`)::

        verifier = CallbackVerifier(os.environ["TRIGGER_CALLBACK_SECRET"], scheme="bearer")
        verifier.check("POST", "/trigger/callback", headers, body)  # or CallbackRejected
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        scheme: Scheme = "bearer",
        header: str = DEFAULT_HEADER,
        tolerance: float = 300.0,
        remember: int = 10_000,
    ) -> None:
        self.secret = secret_from_environment(secret)
        self.scheme = check_scheme(scheme)
        self.header = header.lower()
        self.tolerance = tolerance
        self._remember = remember
        #: nonces of accepted HMAC requests, with their timestamps (replay protection)
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now: float | None = None,
    ) -> None:
        """Raise :class:`CallbackRejected` unless the request carries the right credential."""
        lower = {k.lower(): v for k, v in headers.items()}
        if self.scheme == "bearer":
            given = lower.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not _same(token.strip(), self.secret):
                raise CallbackRejected("authorization: missing or wrong bearer secret")
            return
        if self.scheme == "header":
            if not _same(lower.get(self.header, ""), self.secret):
                raise CallbackRejected(f"{self.header}: missing or wrong secret")
            return
        self._check_hmac(method, target, lower, body, time.time() if now is None else now)

    def _check_hmac(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, now: float
    ) -> None:
        stamp = headers.get(TIMESTAMP_HEADER, "")
        nonce = headers.get(NONCE_HEADER, "")
        given = headers.get(SIGNATURE_HEADER, "")
        if not nonce:
            raise CallbackRejected(f"{NONCE_HEADER}: missing")
        try:
            at = float(stamp)
        except ValueError:
            raise CallbackRejected(f"{TIMESTAMP_HEADER}: missing or not a number") from None
        if abs(now - at) > self.tolerance:
            raise CallbackRejected(
                f"{TIMESTAMP_HEADER}: {abs(now - at):.0f}s from now, beyond the "
                f"{self.tolerance:.0f}s tolerance"
            )
        if not _same(given, hmac_signature(self.secret, stamp, nonce, method, target, body)):
            raise CallbackRejected(f"{SIGNATURE_HEADER}: does not match the request")
        with self._lock:
            for old, seen_at in list(self._seen.items()):
                if now - seen_at <= self.tolerance and len(self._seen) <= self._remember:
                    break
                del self._seen[old]
            if nonce in self._seen:
                raise CallbackRejected(f"{NONCE_HEADER}: already used (a replayed request)")
            self._seen[nonce] = at


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
