"""The server keyring: the one place that encrypts, decrypts and signs.

Every secret the servers derive or keep at rest (attempt credentials, session
cookies, environment variables, webhook and callback secrets, the encrypted
copy of API keys) goes through a :class:`Keyring` made from
``TRIGGERFISH_SERVER_SECRET``. The value is a comma-separated list so the
secret can rotate: the first entry signs and encrypts, every entry verifies
and decrypts. The secret never leaves the servers.

Each use gets its own key, derived from the secret and a *purpose* string, so
a signature made for one purpose is worthless for another.

Example::

    ring = Keyring(["first-secret-of-32-chars-or-more........"])
    sig = ring.sign("attempt", "att_01H…")
    assert ring.verify("attempt", "att_01H…", sig)
    box = ring.encrypt("envvar", b"sk_live_…")
    assert ring.decrypt("envvar", box) == b"sk_live_…"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: the environment variable that holds the server secret(s)
SERVER_SECRET_ENV = "TRIGGERFISH_SERVER_SECRET"
#: a secret shorter than this is refused: it could be guessed
MIN_SECRET_LENGTH = 32
_NONCE_BYTES = 12
_BOX_VERSION = "v1"


class KeyringError(ValueError):
    """The server secret is missing or malformed, or a sealed value cannot be opened."""


def generate_secret() -> str:
    """A new random server secret (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Key:
    """One secret of the ring, with the keys derived from it per purpose."""

    def __init__(self, secret: str) -> None:
        self._root = secret.encode()
        #: names this key inside sealed values, so decryption picks it without trying all
        self.fingerprint = hashlib.sha256(b"fingerprint:" + self._root).hexdigest()[:8]
        self._derived: dict[str, bytes] = {}

    def derive(self, purpose: str) -> bytes:
        key = self._derived.get(purpose)
        if key is None:
            key = hmac.new(self._root, f"triggerfish/{purpose}".encode(), hashlib.sha256).digest()
            self._derived[purpose] = key
        return key

    def mac(self, purpose: str, message: str) -> bytes:
        return hmac.new(self.derive(purpose), message.encode(), hashlib.sha256).digest()


class Keyring:
    """Signs, verifies, encrypts and decrypts with the server secret."""

    def __init__(self, secrets_: Sequence[str]) -> None:
        cleaned = [s.strip() for s in secrets_ if s.strip()]
        if not cleaned:
            raise KeyringError(
                f"no server secret: set {SERVER_SECRET_ENV} "
                "(generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        for secret in cleaned:
            if len(secret) < MIN_SECRET_LENGTH:
                raise KeyringError(
                    f"{SERVER_SECRET_ENV}: each secret needs at least {MIN_SECRET_LENGTH} "
                    f"characters, one has {len(secret)}"
                )
        self._keys = [_Key(s) for s in cleaned]
        self._by_fingerprint = {k.fingerprint: k for k in self._keys}

    @classmethod
    def parse(cls, value: str) -> Keyring:
        """A keyring from the comma-separated form of ``TRIGGERFISH_SERVER_SECRET``."""
        return cls(value.split(","))

    @classmethod
    def from_environment(cls) -> Keyring:
        """The keyring of ``TRIGGERFISH_SERVER_SECRET``; :class:`KeyringError` when unset."""
        return cls.parse(os.environ.get(SERVER_SECRET_ENV, ""))

    @classmethod
    def ephemeral(cls) -> Keyring:
        """A keyring of one random secret, for an engine embedded in one process.

        What it signs is valid only for this process: servers that share a
        store must share ``TRIGGERFISH_SERVER_SECRET`` instead.
        """
        return cls([generate_secret()])

    def sign(self, purpose: str, message: str) -> str:
        """A signature of ``message`` for ``purpose``, made with the current secret."""
        return _b64(self._keys[0].mac(purpose, message))

    def verify(self, purpose: str, message: str, signature: str) -> bool:
        """Whether ``signature`` was made by :meth:`sign` with any secret of the ring."""
        try:
            given = _unb64(signature)
        except (ValueError, TypeError):
            return False
        return any(hmac.compare_digest(k.mac(purpose, message), given) for k in self._keys)

    def sign_for_receiver(self, purpose: str, sealed_secret: str, message: str) -> str:
        """HMAC-SHA256 (hex) of ``message`` with a secret the receiver shares, kept
        sealed (:meth:`encrypt`) under ``purpose``: alert webhooks are signed so."""
        secret = self.decrypt(purpose, sealed_secret)
        return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, purpose: str, plaintext: bytes) -> str:
        """``plaintext`` sealed (AES-256-GCM) as text; only :meth:`decrypt` opens it."""
        key = self._keys[0]
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key.derive(purpose)).encrypt(nonce, plaintext, purpose.encode())
        return f"{_BOX_VERSION}.{key.fingerprint}.{_b64(nonce + sealed)}"

    def decrypt(self, purpose: str, box: str) -> bytes:
        """The plaintext of a value sealed by :meth:`encrypt` with any secret of the ring."""
        version, _, rest = box.partition(".")
        fingerprint, _, body = rest.partition(".")
        key = self._by_fingerprint.get(fingerprint)
        if version != _BOX_VERSION or key is None:
            raise KeyringError(
                "cannot decrypt: sealed with a server secret that is not in "
                f"{SERVER_SECRET_ENV} (keep retired secrets in the list until re-encrypted)"
            )
        raw = _unb64(body)
        try:
            return AESGCM(key.derive(purpose)).decrypt(
                raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode()
            )
        except InvalidTag as exc:
            raise KeyringError(
                f"cannot decrypt: the value was altered or is not a {purpose}"
            ) from exc
