"""``wait``: pause a task for a duration, until a time, for a token or for an event.

Every wait is a durable call (see ``_durable.py``). Waits longer than the
suspend threshold (``TRIGGERFISH_SUSPEND_THRESHOLD`` seconds on the worker,
default 5) suspend the run: it turns ``WAITING``, its worker slot is freed, and
it is replayed from its journal when the wait resolves. Shorter waits sleep in
place. In ``async def`` tasks every call is awaited.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from triggerfish._durations import parse_duration
from triggerfish.errors import TriggerfishError
from triggerfish.sdk._durable import DurableRun, _current, current


class WaitFailedError(TriggerfishError):
    """``unwrap()`` of a wait that did not succeed: a timeout or a failed child run."""

    def __init__(self, message: str, error: Any) -> None:
        self.error = error
        super().__init__(message)


@dataclass(frozen=True)
class WaitResult:
    """How a wait for a token, an event or a child run ended.

    ``ok`` is True when it completed; ``output`` is the data it completed with
    (the token's data, the event's payload, the child's output); ``error`` is
    set otherwise (a timeout, the child's error). ``id`` names the token, event
    or child run.

    Example::

        result = wait.for_token(token)
        if not result.ok:
            logger.warning("nobody approved in time", error=result.error)
        approved = result.unwrap()["approved"]
    """

    ok: bool
    output: Any = None
    error: Any = None
    id: str | None = None

    def unwrap(self) -> Any:
        """``output``, or raise :class:`WaitFailedError` when the wait did not succeed."""
        if self.ok:
            return self.output
        message = (self.error or {}).get("message") if isinstance(self.error, dict) else None
        raise WaitFailedError(
            f"{self.id or 'wait'} did not succeed: {message or self.error}", self.error
        )

    @classmethod
    def from_journal(cls, value: Any) -> WaitResult:
        data = value or {}
        return cls(
            ok=bool(data.get("ok")),
            output=data.get("output"),
            error=data.get("error"),
            id=data.get("id"),
        )


@dataclass(frozen=True)
class WaitToken:
    """A token a human or another system completes: ``id`` for the API, ``url`` for a POST."""

    id: str
    url: str


def _seconds_between(until: datetime) -> float:
    when = until if until.tzinfo else until.replace(tzinfo=UTC)
    return when.timestamp() - time.time()


def _later(value: Any) -> Awaitable[Any]:
    async def done() -> Any:
        return value

    return done()


class Wait:
    """The ``wait`` namespace. Use the module-level ``wait`` object."""

    # -- time -------------------------------------------------------------------

    def for_(
        self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0
    ) -> Any:
        """Pause the run for this long (durably when above the suspend threshold).

        Example::

            await wait.for_(minutes=5)   # async def task
            wait.for_(days=1)            # def task
        """
        total = seconds + minutes * 60 + hours * 3600 + days * 86400
        if total < 0:
            raise ValueError("wait.for_ needs a duration of zero or more")
        return self._time(current("wait.for_"), {"type": "duration", "seconds": total}, total)

    def until(self, when: datetime) -> Any:
        """Pause the run until ``when`` (a naive datetime is taken as UTC).

        Example::

            wait.until(datetime(2030, 1, 1, tzinfo=UTC))
        """
        if not isinstance(when, datetime):
            raise TypeError("wait.until needs a datetime")
        at = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
        return self._time(
            current("wait.until"), {"type": "until", "at": at}, _seconds_between(when)
        )

    def _time(self, run: DurableRun, spec: dict[str, Any], remaining: float) -> Any:
        seq, entry = run.next_call("wait", "wait")
        if entry is not None and entry["status"] == "OK":
            return _later(None) if run.is_async else None
        if remaining > run.suspend_threshold:
            run.suspend(seq, "wait", "wait", spec)
            return _later(None) if run.is_async else None
        if run.is_async:
            return self._sleep_async(run, seq, max(0.0, remaining))
        time.sleep(max(0.0, remaining))
        run.record(seq, "wait", "wait", "OK")
        return None

    async def _sleep_async(self, run: DurableRun, seq: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        run.record(seq, "wait", "wait", "OK")

    # -- tokens -----------------------------------------------------------------

    def create_token(
        self,
        *,
        timeout: str | float | None = None,
        tags: list[str] | str | None = None,
        idempotency_key: str | None = None,
        idempotency_key_ttl: str | float | None = None,
    ) -> Any:
        """Create a token that a person or system completes later.

        ``timeout`` is a duration (``"1h"``, seconds); the token's ``url``
        completes it with a plain HTTP POST of JSON, no API key needed.

        Example::

            token = wait.create_token(timeout="1h", tags=["approval"])
            send_slack_message(f"approve: curl -XPOST {token.url} -d '{{\\"ok\\": true}}'")
            result = wait.for_token(token)
        """
        run = current("wait.create_token")
        seq, entry = run.next_call("token.create", "token")
        if entry is None:
            body = {
                "seq": seq,
                "name": "token",
                "timeout": timeout,
                "tags": [tags] if isinstance(tags, str) else list(tags or []),
                "idempotency_key": idempotency_key,
                "idempotency_key_ttl": idempotency_key_ttl,
            }
            result = run.call("create_token", body)
            entry = {"seq": seq, "kind": "token.create", "name": "token", "status": "OK"}
            entry["result"] = {"id": result["id"], "url": result["url"]}
            run.journal[seq] = entry
        token = WaitToken(**run.result_of(seq, entry))
        return _later(token) if run.is_async else token

    def for_token(self, token: WaitToken | str) -> Any:
        """Suspend until the token is completed or times out; returns a :class:`WaitResult`."""
        token_id = token.id if isinstance(token, WaitToken) else str(token)
        return self._suspend(
            current("wait.for_token"), "token.wait", "token", {"type": "token", "id": token_id}
        )

    def complete_token(self, token: WaitToken | str, data: Any = None) -> Any:
        """Complete a token with ``data`` (JSON); completing it again changes nothing.

        Works inside a task (through the worker) and outside (through the
        default client).
        """
        token_id = token.id if isinstance(token, WaitToken) else str(token)
        run = _current.get()
        if run is None:
            from triggerfish.sdk._client import default_client

            default_client().waitpoints.complete_token(token_id, data)
            return None
        run.call("complete_token", {"id": token_id, "data": data})
        return _later(None) if run.is_async else None

    # -- events -----------------------------------------------------------------

    def for_event(
        self,
        name: str,
        match: dict[str, Any] | None = None,
        timeout: str | float | None = None,
    ) -> Any:
        """Suspend until an event ``name`` whose payload contains ``match`` is sent.

        Returns a :class:`WaitResult`: ``output`` is ``{"id", "name", "payload"}``;
        after ``timeout`` it is not ok.

        Example::

            result = await wait.for_event("content.approved", match={"draft_id": "d1"},
                                          timeout="1h")
        """
        spec: dict[str, Any] = {"type": "event", "name": name, "match": match or {}}
        if timeout is not None:
            spec["timeout"] = parse_duration(timeout)
        return self._suspend(current("wait.for_event"), "event.wait", name, spec)

    def _suspend(self, run: DurableRun, kind: str, name: str, spec: dict[str, Any]) -> Any:
        seq, entry = run.next_call(kind, name)
        if entry is not None and entry["status"] == "OK":
            value = run.result_of(seq, entry)
        else:
            value = run.suspend(seq, kind, name, spec)
        result = WaitResult.from_journal(value)
        return _later(result) if run.is_async else result


#: ``wait.for_``, ``wait.until``, ``wait.create_token``, ``wait.for_token``, ``wait.for_event``
wait = Wait()


# -- child runs -----------------------------------------------------------------


@dataclass(frozen=True)
class BatchItem:
    """One run of ``batch_trigger_and_wait`` with its own trigger options.

    Example::

        results = await render.batch_trigger_and_wait(
            [BatchItem({"page": 1}, tags=["p1"]), {"page": 2}]
        )
    """

    payload: Any
    options: dict[str, Any]

    def __init__(self, payload: Any, **options: Any) -> None:
        object.__setattr__(self, "payload", payload)
        object.__setattr__(self, "options", options)


#: the options of ``trigger_and_wait`` that are not trigger options
_WAIT_ONLY = frozenset({"cancel_with_parent", "timeout"})


def wait_for_runs(task: Any, items: list[Any], options: dict[str, Any], *, batch: bool) -> Any:
    """Trigger runs of ``task`` and suspend until all of them finish (one durable call)."""
    from triggerfish.sdk._options import wire_options

    what = "batch_trigger_and_wait" if batch else "trigger_and_wait"
    run = current(f"{task.id}.{what}")
    shared = dict(options)
    cancel = bool(shared.pop("cancel_with_parent", True))
    timeout = shared.pop("timeout", None)
    kind = "batch" if batch else "child"
    seq, entry = run.next_call(kind, task.id)
    if entry is not None and entry["status"] == "OK":
        value = run.result_of(seq, entry)
    else:
        wire = []
        for item in items:
            payload, own = (
                (item.payload, item.options) if isinstance(item, BatchItem) else (item, {})
            )
            wire.append(
                {
                    "task_id": task.id,
                    "payload": task.dump_payload(payload),
                    "options": wire_options({**shared, **own}, also_valid=_WAIT_ONLY),
                }
            )
        spec: dict[str, Any] = {"type": "runs", "items": wire, "cancel_children": cancel}
        if timeout is not None:
            spec["timeout"] = parse_duration(timeout)
        value = run.suspend(seq, kind, task.id, spec)
    result: Any = (
        [WaitResult.from_journal(v) for v in value or []]
        if batch
        else WaitResult.from_journal(value)
    )
    return _later(result) if run.is_async else result
