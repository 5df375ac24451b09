"""The wire format of a trigger: the body of ``POST /api/v1/tasks/{id}/trigger``.

The same body is sent by batch items, by a task's trigger-and-wait, by a
replay and on the client socket's trigger frames (``api/client_socket.py``), so
its models, their checks and the mapping to the engine's
:class:`~triggerfish.engine.enqueue.TriggerRequest` live here, apart from the
routes. Unknown fields are ignored (WIRE.md §16).

Example::

    body = TriggerBody.model_validate({"payload": {"to": "a@b.c"}, "options": {"delay": "1h"}})
    request = trigger_request("send-email", body, now=time.time())
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from triggerfish._domain.machines import MACHINE_MEMORY_MB
from triggerfish._domain.traces import parse_traceparent
from triggerfish._durations import parse_duration
from triggerfish.api.validated import Duration, Int64, Key, Name, Priority, Seconds, Text
from triggerfish.engine.enqueue import MAX_TAGS, Debounce, TriggerRequest, TriggerResult
from triggerfish.errors import InvalidTaskOptions, UserError


class QueueOption(BaseModel):
    name: Name


class DebounceOption(BaseModel):
    """``options.debounce``: collapse a burst of triggers with one key into one run."""

    model_config = ConfigDict(extra="ignore")

    key: Key
    delay: Duration
    mode: Literal["leading", "trailing"] = "trailing"
    maxDelay: Duration | None = None


class TriggerOptions(BaseModel):
    """``options`` of a trigger request; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    queue: QueueOption | None = None
    concurrencyKey: Key | Int64 | None = None
    payloadType: Text | None = None
    idempotencyKey: Annotated[Key, Field(max_length=128)] | None = None
    idempotencyKeyTTL: Duration | None = None
    idempotencyKeyOptions: dict[str, Any] | None = None
    #: seconds from now (a number, never a Unix timestamp), a duration like "1h", or a date
    delay: Seconds | Annotated[str, Field(max_length=64)] | None = None
    ttl: Duration | None = None
    tags: Name | list[Name] | None = None
    maxAttempts: int | None = Field(default=None, ge=1, le=100)
    maxDuration: Annotated[Seconds, Field(gt=0)] | None = None
    metadata: dict[str, Any] | None = None
    machine: str | None = None
    priority: Priority | None = None
    test: bool | None = None
    debounce: DebounceOption | None = None

    @field_validator("machine")
    @classmethod
    def _known_machine(cls, value: str | None) -> str | None:
        if value is not None and value not in MACHINE_MEMORY_MB:
            raise ValueError(
                f"unknown machine {value!r}; use one of {', '.join(MACHINE_MEMORY_MB)}"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _few_short_tags(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        tags = [value] if isinstance(value, str) else value
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags per run, got {len(tags)}")
        for tag in tags:
            if not 0 < len(tag) <= 128:
                raise ValueError(f"each tag must be 1 to 128 characters, got {len(tag)}")
        return tags


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payload: Any = None
    context: Any = None
    options: TriggerOptions = Field(default_factory=TriggerOptions)


def decode_payload(payload: Any, payload_type: str | None) -> Any:
    """The JSON value of a payload packet (WIRE.md §2)."""
    if payload_type == "application/super+json":
        if not isinstance(payload, str):
            raise UserError("payload: a super+json payload must be a string")
        try:
            return json.loads(payload).get("json")
        except (ValueError, AttributeError):
            raise UserError("payload: not a valid super+json packet") from None
    if payload_type == "application/store":
        raise UserError("payload: offloaded payloads (application/store) are not supported yet")
    return payload


#: the header a client sends with the same value on every retry of one call (WIRE.md §2)
REQUEST_KEY_HEADER = "x-trigger-request-idempotency-key"
_MAX_REQUEST_KEY = 128


def request_key(value: str | bytes | None) -> str | None:
    """The request key a call carries (None without one); a malformed one is refused."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    if not text:
        return None
    if len(text) > _MAX_REQUEST_KEY or not text.isprintable():
        raise UserError(
            f"{REQUEST_KEY_HEADER}: at most {_MAX_REQUEST_KEY} printable characters "
            "(a UUID, say: the same on every retry of one call)"
        )
    return text


def trigger_request(
    task_id: str,
    body: TriggerBody,
    now: float,
    traceparent: str | None = None,
    request: str | None = None,
) -> TriggerRequest:
    """The engine's request for a trigger body; ``traceparent`` is the caller's W3C
    trace context (a malformed one is dropped: the run starts a trace of its own),
    ``request`` the call's request key (see :func:`request_key`)."""
    opts = body.options
    context = parse_traceparent(traceparent) if traceparent else None
    try:
        return TriggerRequest(
            task_id=task_id,
            payload=decode_payload(body.payload, opts.payloadType),
            payload_type="application/json",
            tags=list(opts.tags or []),
            metadata=opts.metadata,
            idempotency_key=opts.idempotencyKey,
            idempotency_key_raw=(opts.idempotencyKeyOptions or {}).get("key"),
            idempotency_key_ttl=_seconds("idempotencyKeyTTL", opts.idempotencyKeyTTL),
            machine=opts.machine,
            max_attempts=opts.maxAttempts,
            max_duration=opts.maxDuration,
            queue=opts.queue.name if opts.queue else None,
            concurrency_key=str(opts.concurrencyKey) if opts.concurrencyKey is not None else None,
            delay_until=delay_until(opts.delay, now),
            ttl=_seconds("ttl", opts.ttl),
            ttl_text=str(opts.ttl) if opts.ttl is not None else None,
            priority=opts.priority or 0.0,
            is_test=bool(opts.test),
            debounce=_debounce(opts.debounce),
            trace_context=context.traceparent if context else None,
            request_key=request,
        )
    except ValueError as exc:
        raise InvalidTaskOptions(str(exc)) from None


def _debounce(option: DebounceOption | None) -> Debounce | None:
    if option is None:
        return None
    delay = _seconds("debounce.delay", option.delay) or 0.0
    max_delay = _seconds("debounce.maxDelay", option.maxDelay)
    if delay <= 0:
        raise ValueError("options.debounce.delay: must be more than 0 seconds")
    if max_delay is not None and max_delay < delay:
        raise ValueError("options.debounce.maxDelay: must be at least the delay")
    return Debounce(option.key, delay, option.mode, max_delay)


#: the longest a duration option may be (a delay, a TTL, a debounce): far enough
#: for any schedule, and short of dates the store cannot hold
MAX_OPTION_SECONDS = 100 * 365 * 24 * 3600


def _seconds(field: str, value: str | float | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"options.{field}: {exc}") from None
    return _bounded(field, value, seconds)


def _bounded(field: str, value: object, seconds: float) -> float:
    if seconds > MAX_OPTION_SECONDS:
        raise ValueError(f"options.{field}: {value} is more than 100 years away")
    return seconds


def delay_until(value: str | float | datetime | None, now: float) -> float | None:
    """When a delayed run starts: ``value`` is seconds from ``now``, a duration, or a date."""
    if value is None:
        return None
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("options.delay: a delay cannot be negative")
        return now + _bounded("delay", value, float(value))
    if isinstance(value, datetime):
        at = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        _bounded("delay", value.isoformat(), at - now)
        return at
    try:
        seconds = parse_duration(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"options.delay: {value!r} is neither a duration like '1h30m' nor an ISO date"
            ) from None
        return delay_until(parsed, now)
    return now + _bounded("delay", value, seconds)


def trigger_answer(result: TriggerResult) -> dict[str, Any]:
    """A trigger's answer body: ``{"id": "run_…"}``, and ``isCached`` / ``debounced``."""
    answer: dict[str, Any] = {"id": result.id}
    if result.is_cached:
        answer["isCached"] = True
    if result.debounced:
        answer["debounced"] = True  # Triggerfish: joined a waiting debounced run
    return answer
