"""The server keyring: signatures and sealed values, across a rotation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triggerfish.engine.keyring import Keyring, KeyringError, generate_secret

OLD, NEW = generate_secret(), generate_secret()


@given(purpose=st.text(min_size=1, max_size=20), message=st.text(max_size=200))
def test_a_signature_verifies_for_its_purpose_and_message_only(purpose: str, message: str) -> None:
    ring = Keyring([NEW])
    sig = ring.sign(purpose, message)
    assert ring.verify(purpose, message, sig)
    assert not ring.verify(purpose + "x", message, sig)
    assert not ring.verify(purpose, message + "x", sig)
    assert not Keyring([OLD]).verify(purpose, message, sig)


@given(plaintext=st.binary(max_size=500))
def test_sealed_values_open_with_their_purpose_only(plaintext: bytes) -> None:
    ring = Keyring([NEW])
    box = ring.encrypt("envvar", plaintext)
    assert ring.decrypt("envvar", box) == plaintext
    with pytest.raises(KeyringError, match="altered or is not a webhook"):
        ring.decrypt("webhook", box)


def test_a_rotated_ring_verifies_and_opens_what_the_old_secret_made() -> None:
    old = Keyring([OLD])
    sig, box = old.sign("attempt", "a1"), old.encrypt("envvar", b"value")
    rotated = Keyring.parse(f"{NEW},{OLD}")
    assert rotated.verify("attempt", "a1", sig)
    assert rotated.decrypt("envvar", box) == b"value"
    # new values are made with the first secret: a ring without the old one opens them
    assert Keyring([NEW]).decrypt("envvar", rotated.encrypt("envvar", b"v2")) == b"v2"
    with pytest.raises(KeyringError, match="not in TRIGGERFISH_SERVER_SECRET"):
        Keyring([NEW]).decrypt("envvar", box)


def test_an_altered_sealed_value_is_refused() -> None:
    ring = Keyring([NEW])
    box = ring.encrypt("envvar", b"value")
    flipped = box[:-3] + ("A" if box[-3] != "A" else "B") + box[-2:]
    with pytest.raises(KeyringError):
        ring.decrypt("envvar", flipped)


@pytest.mark.parametrize("value", ["", " , ", "short-secret"])
def test_a_missing_or_weak_secret_is_refused_with_the_fix(value: str) -> None:
    with pytest.raises(KeyringError, match="TRIGGERFISH_SERVER_SECRET"):
        Keyring.parse(value)


def test_a_server_refuses_to_start_without_a_secret(tmp_path: object) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERFISH_")}
    env["DATABASE_URL"] = "sqlite:///unused.db"
    done = subprocess.run(
        [sys.executable, "-m", "triggerfish.cli.main", "server", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert done.returncode == 1
    assert "TRIGGERFISH_SERVER_SECRET" in done.stderr + done.stdout
