"""SDK pieces of flow control that need no server: queues, scoped keys, options."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triggerfish import idempotency_keys, queue
from triggerfish._domain.retry import RetryPolicy
from triggerfish._metadata_ops import apply_operations
from triggerfish.sdk._client import _wire_options
from triggerfish.sdk._durable import DurableRun, activate, deactivate


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


_values = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none())
_keys = st.sampled_from(["a", "b", "c"])
_ops = st.one_of(
    st.builds(lambda k, v: {"type": "set", "key": k, "value": v}, _keys, _values),
    st.builds(lambda k: {"type": "delete", "key": k}, _keys),
    st.builds(lambda k, v: {"type": "append", "key": k, "value": v}, _keys, _values),
    st.builds(lambda k, v: {"type": "remove", "key": k, "value": v}, _keys, _values),
)


@given(st.lists(_ops, max_size=12), st.lists(st.integers(-100, 100), max_size=8))
def test_metadata_operations_compose(ops: list[dict[str, Any]], increments: list[int]) -> None:
    """Applying operations one at a time equals applying them together (the task's
    local copy and the server agree), and increments add up."""
    one_by_one: dict[str, Any] = {}
    for op in ops:
        one_by_one = apply_operations(one_by_one, [op])
    assert apply_operations({}, ops) == one_by_one
    counted = apply_operations(
        {}, [{"type": "increment", "key": "n", "value": v} for v in increments]
    )
    assert counted.get("n", 0) == sum(increments)
    for op in ops:
        if op["type"] == "remove":
            after = apply_operations(one_by_one, [op])
            if isinstance(after.get(op["key"]), list):
                assert op["value"] not in after[op["key"]]
