"""Trigger options: the typed keyword set users pass, and its wire form.

:class:`TriggerOptions` is the one list of option names: mypy checks the
keywords of every ``trigger`` against it, and :func:`wire_options` refuses any
other name at run time, naming the valid ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    from triggerfish.sdk._client import Triggerfish
    from triggerfish.sdk._queue import Queue


class Debounce(TypedDict, total=False):
    """``debounce=``: runs with the same ``key`` within ``delay`` become one."""

    key: str
    delay: str | float
    mode: Literal["leading", "trailing"]
    max_delay: str | float


class TriggerOptions(TypedDict, total=False):
    """Options of one trigger, all optional (``None`` is "not set").

    Durations are ``"1h30m"`` or seconds; ``delay`` may also be a datetime.
    """

    tags: list[str] | str | None
    metadata: dict[str, Any] | None
    idempotency_key: str | None
    idempotency_key_ttl: str | float | None
    machine: str | None
    max_attempts: int | None
    max_duration: float | None
    queue: Queue | str | None
    concurrency_key: str | None
    delay: str | float | datetime | None
    ttl: str | float | None
    priority: float | None
    debounce: Debounce | None


class TaskTriggerOptions(TriggerOptions, total=False):
    """``my_task.trigger(...)`` options: those of a trigger, and the client to send it with."""

    client: Triggerfish


class WaitOptions(TriggerOptions, total=False):
    """``trigger_and_wait`` options: those of a trigger, and how the parent waits."""

    #: canceling the waiting parent cancels the child (default True)
    cancel_with_parent: bool
    #: the parent stops waiting then, with a not-ok result (the child runs on)
    timeout: str | float


#: the wire name of each option that goes over as it is
_WIRE_NAMES = {
    "tags": "tags",
    "metadata": "metadata",
    "idempotency_key": "idempotencyKey",
    "idempotency_key_ttl": "idempotencyKeyTTL",
    "machine": "machine",
    "max_attempts": "maxAttempts",
    "max_duration": "maxDuration",
    "concurrency_key": "concurrencyKey",
    "delay": "delay",
    "ttl": "ttl",
    "priority": "priority",
}


def wire_options(
    options: dict[str, Any], *, also_valid: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """``options`` as the wire's ``options`` object; ``TypeError`` for an unknown name.

    ``also_valid`` names options the caller took out before (``client``,
    ``timeout``), so the error lists every option the caller accepts.
    """
    wire: dict[str, Any] = {}
    for name, value in options.items():
        if value is None:
            continue
        if name == "queue":
            wire["queue"] = {"name": getattr(value, "name", value)}
        elif name == "debounce":
            wire["debounce"] = _wire_debounce(value)
        elif name in _WIRE_NAMES:
            wire[_WIRE_NAMES[name]] = value.isoformat() if isinstance(value, datetime) else value
        else:
            valid = ", ".join(sorted(TriggerOptions.__optional_keys__ | also_valid))
            raise TypeError(f"unknown trigger option {name!r}; valid options: {valid}")
    return wire


def _wire_debounce(value: dict[str, Any]) -> dict[str, Any]:
    """``{"key", "delay", "mode"?, "max_delay"?}`` as the wire's ``debounce``."""
    unknown = set(value) - {"key", "delay", "mode", "max_delay", "maxDelay"}
    if unknown or "key" not in value or "delay" not in value:
        raise TypeError(
            "debounce: pass {'key': ..., 'delay': '5s', 'mode': 'trailing'|'leading', "
            "'max_delay': '1m'}"
        )
    wire = {k: v for k, v in value.items() if k != "max_delay"}
    if value.get("max_delay") is not None:
        wire["maxDelay"] = value["max_delay"]
    return wire
