"""Ids: Trigger.dev's shape, creation-time order, and strictly increasing in a process."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triggerfish import _ids

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _digits(value: int, width: int) -> str:
    """Base 32, most significant digit first, one digit at a time (the reference)."""
    out = []
    for _ in range(width):
        value, rest = divmod(value, 32)
        out.append(ALPHABET[rest])
    return "".join(reversed(out))


@given(st.integers(0, 2**50 - 1), st.integers(0, 2**75 - 1))
def test_the_digits_are_the_time_then_the_random_part(millis: int, rand: int) -> None:
    assert _ids._encode(millis, rand) == _digits(millis, 10) + _digits(rand, 15)


@given(st.lists(st.tuples(st.integers(1, 40), st.floats(1.6e9, 1.6e9 + 5)), max_size=30))
def test_ids_made_in_a_process_strictly_increase(calls: list[tuple[int, float]]) -> None:
    made: list[str] = []
    for count, now in sorted(calls, key=lambda c: c[1]):
        batch = _ids.new_ids("attempt", count, now) if count > 1 else [_ids.new_id("attempt", now)]
        assert len(batch) == count
        made += batch
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(re.fullmatch(r"attempt_[0-9a-hjkmnp-tv-z]{25}", i) for i in made)


def test_ids_sort_by_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # as in a fresh process: ids made earlier (tests move their clocks ahead)
    # would hold later ones at their time, which is what keeps ids increasing
    monkeypatch.setattr(_ids, "_last", (0, 0))
    base = time.time()
    earlier = _ids.new_id("run", base)
    later = _ids.new_id("run", base + 0.002)
    assert earlier < later and earlier[4:14] == _digits(int(base * 1000), 10)
    assert later[4:14] == _digits(int((base + 0.002) * 1000), 10)
