"""Durations as Trigger.dev writes them: ``"1h30m"``, ``"10s"``, ``"2d"``, or seconds."""

from __future__ import annotations

import re

_UNITS = {"w": 604800, "d": 86400, "hr": 3600, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)(w|d|hr|h|m|s)")


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``; raises ``ValueError`` naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '1h30m'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = value.strip()
    if text.isdigit():
        return float(text)
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"invalid duration {value!r}: use <int><unit> parts with units w, d, h, m, s "
            "(e.g. '1h30m') or a number of seconds"
        )
    return total
