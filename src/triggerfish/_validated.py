"""Input checked at the door, shared by the API and the dashboard: the validated
types, the strict JSON reader and the text checks (``api/validated.py`` puts
them on the API's routes, ``dashboard/web.py`` on the dashboard's forms).

See ``api/validated.py`` for what is refused and why.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any
from urllib.parse import parse_qsl

from pydantic import AfterValidator, Field, StringConstraints

from triggerfish._durations import parse_duration
from triggerfish.errors import UserError

#: the deepest a JSON body may nest (objects and arrays)
MAX_JSON_DEPTH = 64
#: the longest duration anywhere (delay, TTL, timeout, rate-limit period): 100 years
MAX_SECONDS = 100 * 365 * 24 * 3600
#: a priority is a time offset in seconds (Trigger.dev's model): at most 10 years
MAX_PRIORITY = 10 * 365 * 24 * 3600
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_SURROGATES = re.compile("[\ud800-\udfff]")


class BadInput(UserError):
    """A value the API refuses at the door; the message starts with the field."""

    status_code = 422


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character"
    if _SURROGATES.search(value) is not None:
        return "contains a lone UTF-16 surrogate (not valid Unicode)"
    return None


def _clean(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _duration(value: str | float) -> str | float:
    seconds = parse_duration(value)
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"{value!r} is more than 100 years")
    return value


#: any text: no NUL, no lone surrogate, at most 64 KiB of characters
Text = Annotated[str, StringConstraints(max_length=65_536), AfterValidator(_clean)]
#: a name (task, queue, tag, worker, schedule): 1 to 128 characters
Name = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_clean)]
#: an event name: 1 to 256 characters
EventName = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_clean)]
#: a key (idempotency, concurrency, KV, deduplication, external id): 1 to 512 characters
Key = Annotated[str, StringConstraints(min_length=1, max_length=512), AfterValidator(_clean)]
#: an id (run, attempt, batch, token, schedule): 1 to 128 characters
Id = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_clean)]
#: an integer that fits a 64-bit column
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
NonNegativeInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveInt64 = Annotated[int, Field(ge=1, le=INT64_MAX)]
#: a position that fits a 32-bit column (a journal step's ``seq``, a count of tries)
Index32 = Annotated[int, Field(ge=0, le=2**31 - 1)]
#: a time as epoch seconds, from 1970 to the end of year 9999
Epoch = Annotated[float, Field(ge=0, le=253_402_300_799, allow_inf_nan=False)]
#: seconds, a finite number from 0 to :data:`MAX_SECONDS`
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
#: a duration as Trigger.dev writes it (``"1h30m"``) or a number of seconds, 0 to 100 years
Duration = Annotated[
    Annotated[str, StringConstraints(max_length=64)] | Seconds, AfterValidator(_duration)
]
#: a priority: a time offset in seconds, 0 to :data:`MAX_PRIORITY`
Priority = Annotated[float, Field(ge=0, le=MAX_PRIORITY, allow_inf_nan=False)]


# ---------------------------------------------------------------------------
# JSON


class _Refused:
    """Stands in for a value json.loads gave that no store can keep."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a JSON number")


def _float(text: str) -> float | _Refused:
    value = float(text)
    if math.isinf(value):
        return _Refused(f"{text} is beyond the range of a 64-bit float")
    return value


# the cheap look at the raw body that says whether a walk is needed: an escape
# (the only way to write NUL or a lone surrogate), a long run of digits, a huge
# exponent, or a constant that is not JSON
_SUSPECT = re.compile(rb"\\u|\d{19}|NaN|Infinity|[eE]\+?\d{3}")


def loads(body: bytes | str, *, where: str = "") -> Any:
    """``body`` parsed as JSON, refusing what cannot be stored (see the module doc).

    Raises :class:`BadInput` (422) naming the field, e.g. ``payload.a.0: contains
    a NUL character``, or ``json.JSONDecodeError`` for text that is not JSON.
    """
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_float)
    except RecursionError:
        raise BadInput(f"{where or 'body'}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    deep = raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH
    if deep or _SUSPECT.search(raw) is not None:
        check_json(value, where)
    return value


def check_json(value: Any, where: str = "") -> None:
    """Raise :class:`BadInput` naming the first part of ``value`` no store can keep."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        path = at or "body"
        if isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise BadInput(f"{path}: {item} does not fit in 64 bits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadInput(f"{path}: {item} is not a finite number")
        elif isinstance(item, _Refused):
            raise BadInput(f"{path}: {item.why}")
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise BadInput(f"{path}: nested deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    name = key if _printable(key) else "<key>"
                    _check_text(key, _join(at, name))
                    stack.append((child, _join(at, name), depth + 1))
            else:
                stack.extend((child, _join(at, str(i)), depth + 1) for i, child in enumerate(item))


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _printable(key: str) -> bool:
    return text_problem(key) is None and len(key) <= 64


def _check_text(value: str, path: str) -> None:
    problem = text_problem(value)
    if problem is not None:
        raise BadInput(f"{path}: {problem}")


def url_problem(path: str, query: bytes) -> str | None:
    """Why a request's path or query string cannot be taken, or None."""
    if "\x00" in path:
        return "path: contains a NUL character"
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                label = name.replace("\x00", "") or "query"
                return f"{label}: contains a NUL character"
    return None
