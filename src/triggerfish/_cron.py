"""Cron expressions in IANA time zones: parsing, slot arithmetic, descriptions.

Parsing and matching come from ``cronsim`` (standard 5 fields, ranges, steps,
lists, month and day names, ``L``, ``LW``, ``5L``, ``1#2``); this module adds
time zones, the common ``@daily``-style macros, clear error messages, and slot
arithmetic on epoch seconds that is strictly increasing.

Daylight-saving policy (Debian cron's, as ``cronsim`` implements it):

* a *fixed-time* expression (its minute and hour fields are not ``*``-based,
  e.g. ``30 2 * * *``) fires once per matching day: a wall time that does not
  exist that day (spring forward) fires at the first minute after the gap
  (02:30 becomes 03:00), and a wall time that occurs twice (fall back) fires
  once, at its first occurrence;
* an *interval* expression (minute or hour is ``*``-based, e.g. ``*/15 * * * *``
  or ``0 * * * *``) follows elapsed time: no slots inside a skipped hour, and
  both passes through a repeated hour fire, since they are different instants.

Example::

    spec = parse_cron("0 9 * * MON-FRI", "America/New_York")
    first = spec.next_after(time.time())      # epoch seconds of the next 09:00 NY
    spec.upcoming(first, 5)                   # the five slots after that one
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from cronsim import CronSim, CronSimError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = "minute hour day-of-month month day-of-week"
#: wider than any daylight-saving shift (seconds)
_DST_MARGIN = 3 * 3600
#: longest accepted expression; real ones are far shorter
MAX_EXPRESSION_LENGTH = 200


class CronError(ValueError):
    """An expression or time zone that cannot be used; the message says why and how."""


@functools.cache
def timezone_names() -> tuple[str, ...]:
    """Every IANA time zone name this machine knows, sorted (``UTC`` included)."""
    # "localtime" is whatever the server's /etc/localtime says and "Factory" a
    # placeholder zone: neither means the same thing everywhere
    return tuple(sorted((available_timezones() | {"UTC"}) - {"localtime", "Factory"}))


def check_timezone(name: str) -> ZoneInfo:
    """The zone called ``name``; ``CronError`` naming it if it is not an IANA zone."""
    if name not in timezone_names():
        raise CronError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC', "
            "'America/New_York' or 'Europe/Paris' (GET /api/v1/timezones lists them)"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # listed but unreadable: broken tz data
        raise CronError(f"time zone {name!r} cannot be loaded on this server") from None


@dataclass(frozen=True)
class CronSpec:
    """A validated cron expression in a time zone. Made by :func:`parse_cron`."""

    expression: str
    timezone: str
    zone: ZoneInfo = field(repr=False, compare=False)
    #: what cronsim evaluates (macros expanded)
    normalized: str = field(repr=False, compare=False)

    def slots_after(self, after: float) -> Iterator[float]:
        """Slots strictly after ``after`` (epoch seconds), strictly increasing.

        cronsim walks local wall time for fixed-time expressions, which can hand
        back an instant at or before the previous one around a fall-back hour;
        such results are skipped so slots always move forward.
        """
        start = datetime.fromtimestamp(math.floor(after), UTC).astimezone(self.zone)
        last = after
        with contextlib.suppress(StopIteration):  # no match within cronsim's 50 years
            for slot in CronSim(self.normalized, start):
                value = slot.timestamp()
                if value > last:
                    last = value
                    yield value

    def next_after(self, after: float) -> float | None:
        """The first slot strictly after ``after`` (epoch seconds); ``None`` if there is none."""
        return next(self.slots_after(after), None)

    def latest_at_or_before(self, at: float) -> float | None:
        """The last slot at or before ``at`` (epoch seconds); ``None`` if there is none.

        Forward iteration defines the slots; cronsim's reverse walk only finds
        where to start, with a margin wider than any DST shift so a wall time
        the two walks treat differently cannot be missed.
        """
        # reverse iteration ticks before matching: start one second past ``at``
        start = datetime.fromtimestamp(math.floor(at) + 1, UTC).astimezone(self.zone)
        try:
            near = next(CronSim(self.normalized, start, reverse=True)).timestamp()
        except StopIteration:
            return None
        best: float | None = None
        for value in self.slots_after(min(near, at) - _DST_MARGIN):
            if value > at:
                break
            best = value
        return best

    def upcoming(self, after: float, count: int) -> list[float]:
        """The ``count`` slots strictly after ``after``, in order."""
        return list(itertools.islice(self.slots_after(after), count))

    def describe(self) -> str:
        """A sentence for people: ``"At 09:00 on Monday through Friday"``."""
        try:
            return CronSim(self.normalized, datetime(2000, 1, 1)).explain()
        except Exception:  # the explainer is best effort; the expression itself is valid
            return self.expression


def parse_cron(expression: str, timezone: str = "UTC", *, allow_seconds: bool = False) -> CronSpec:
    """Validate ``expression`` in ``timezone``; raises :class:`CronError` with the reason.

    ``allow_seconds`` also accepts a 6-field expression whose first field is the
    second; the server allows it only when configured to (tests).

    Example::

        parse_cron("*/15 * * * *", "Europe/Paris")
        parse_cron("0 25 * * *")   # CronError: ... hour ...
    """
    if not isinstance(expression, str) or not expression.strip():
        raise CronError(f'cron expression is empty: use 5 fields "{_FIELDS}", e.g. "0 9 * * *"')
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CronError(f"cron expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    zone = check_timezone(timezone)
    text = " ".join(expression.split())
    normalized = MACROS.get(text.lower(), text)
    fields = normalized.split()
    if len(fields) != 5 and not (allow_seconds and len(fields) == 6):
        raise CronError(
            f'cron expression {expression!r} has {len(fields)} fields; use 5 fields "{_FIELDS}" '
            '(e.g. "0 9 * * *") or a macro such as @daily'
        )
    try:
        CronSim(normalized, datetime(2000, 1, 1, tzinfo=zone))
    except CronSimError as exc:
        raise CronError(
            f"cron expression {expression!r} is invalid ({str(exc).lower()}); fields are "
            f'"{_FIELDS}", e.g. "0 9 * * MON-FRI" or "*/15 * * * *"'
        ) from None
    spec = CronSpec(expression=text, timezone=timezone, zone=zone, normalized=normalized)
    probe = datetime(2000, 1, 1, tzinfo=UTC)
    if spec.next_after(probe.timestamp()) is None and (
        spec.next_after((probe + timedelta(days=366 * 40)).timestamp()) is None
    ):
        raise CronError(f"cron expression {expression!r} never matches a date")
    return spec
