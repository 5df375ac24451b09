"""SDK pieces of flow control that need no server: queues, scoped keys, options."""

from __future__ import annotations

import hashlib

import pytest

from triggerfish import idempotency_keys, queue
from triggerfish.sdk._client import _wire_options
from triggerfish.sdk._durable import DurableRun, activate, deactivate
from triggerfish.sdk._retry import RetryPolicy


def test_queue_declares_limits_and_rate() -> None:
    q = queue("llm", 5, concurrency_key_limit=2, rate_limit=(100, "1m"))
    assert q.to_json() == {
        "name": "llm",
        "concurrency_limit": 5,
        "concurrency_key_limit": 2,
        "rate_limit": [100, 60.0],
    }
    with pytest.raises(ValueError, match="rate_limit"):
        queue("bad", rate_limit=(0, "1m"))
    with pytest.raises(ValueError, match="period"):
        queue("bad", rate_limit=(1, "soon"))


def test_idempotency_key_scopes() -> None:
    digest = hashlib.sha256(b"k").hexdigest()
    assert idempotency_keys.create("k") == digest  # outside a task every scope is global
    run = DurableRun(
        run_id="run_1",
        attempt_id="attempt_1",
        task_id="t",
        retry=RetryPolicy(),
        is_async=False,
        transport=lambda op, body: {},
        loop=None,
    )
    token = activate(run)
    try:
        assert idempotency_keys.create("k", "global") == digest
        assert idempotency_keys.create("k") == hashlib.sha256(b"k-run_1").hexdigest()
        assert (
            idempotency_keys.create("k", "attempt")
            == hashlib.sha256(b"k-run_1-attempt_1").hexdigest()
        )
    finally:
        deactivate(token)


def test_debounce_option_goes_on_the_wire() -> None:
    wire = _wire_options({"debounce": {"key": "u", "delay": "5s", "max_delay": "1m"}})
    assert wire == {"debounce": {"key": "u", "delay": "5s", "maxDelay": "1m"}}
    with pytest.raises(TypeError, match="debounce"):
        _wire_options({"debounce": {"delay": "5s"}})
