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


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


_lock = threading.Lock()
_last = (0, 0)
_RANDOM_BITS = 75


def new_id(prefix: str, now: float | None = None) -> str:
    global _last
    millis = int((time.time() if now is None else now) * 1000)
    with _lock:
        last_millis, last_random = _last
        if millis <= last_millis and last_random + 1 < 2**_RANDOM_BITS:
            millis, rand = last_millis, last_random + 1
        else:
            rand = secrets.randbits(_RANDOM_BITS - 1)  # headroom for increments
        _last = (millis, rand)
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 15)}"
