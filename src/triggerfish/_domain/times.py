"""Times as the store keeps them and as the wire shows them.

The store keeps naive UTC datetimes; the engine counts in epoch seconds; the
wire (Trigger.dev's payloads and API answers) writes ``2026-03-08T07:00:00.000Z``.

Example::

    to_datetime(0.25)            # datetime(1970, 1, 1, 0, 0, 0, 250000)
    iso_millis(to_datetime(0))   # "1970-01-01T00:00:00.000Z"
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_datetime(epoch: float) -> datetime:
    """Naive UTC datetime, as stored."""
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def iso_millis(value: datetime) -> str:
    """``value`` (UTC, naive or aware) to the millisecond, with a ``Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def iso_from_epoch(epoch: float) -> str:
    """Epoch seconds in the shape of :func:`iso_millis`."""
    return iso_millis(datetime.fromtimestamp(epoch, UTC))
