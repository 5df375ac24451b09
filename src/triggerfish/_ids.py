"""Identifiers shaped like Trigger.dev's: ``<prefix>_`` + 25 lowercase base-32 chars.

The first 10 characters encode the creation time in milliseconds, so ids of one
kind sort by creation time; the rest are random. Within one process ids are
strictly increasing even inside one millisecond (the random part is then
incremented), so "newest first" lists are stable.
"""

from __future__ import annotations

import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base 32, lowercase
#: every pair of digits, by the 10-bit value it stands for
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]

_lock = threading.Lock()
_last = (0, 0)
_RANDOM_BITS = 75


def _encode(millis: int, rand: int) -> str:
    """The 25 digits: 10 of the time, 15 random, most significant first.

    Two digits per step (the 125 bits with a zero digit in front): a claim
    makes dozens of ids at once, where a digit-by-digit loop showed in profiles.
    """
    value = (millis << _RANDOM_BITS) | rand
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])[1:]


_SHIFTS = range(120, -1, -10)


def new_id(prefix: str, now: float | None = None) -> str:
    return new_ids(prefix, 1, now)[0]


def new_ids(prefix: str, count: int, now: float | None = None) -> list[str]:
    """``count`` new ids, strictly increasing, as ``new_id`` would make them one by one."""
    global _last
    millis = int((time.time() if now is None else now) * 1000)
    with _lock:
        last_millis, last_random = _last
        if millis <= last_millis and last_random + count < 2**_RANDOM_BITS:
            millis, rand = last_millis, last_random + 1
        else:
            rand = secrets.randbits(_RANDOM_BITS - 1)  # headroom for increments
        _last = (millis, rand + count - 1)
    return [f"{prefix}_{_encode(millis, rand + i)}" for i in range(count)]
