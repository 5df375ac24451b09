"""``wait``: pause a task for a duration, until a time, for a token or for an event.

Every wait is a durable call (see ``_durable.py``). Waits longer than the
suspend threshold (``TRIGGERFISH_SUSPEND_THRESHOLD`` seconds on the worker,
default 5) suspend the run: it turns ``WAITING``, its worker slot is freed, and
it is replayed from its journal when the wait resolves. Shorter waits sleep in
place. In ``async def`` tasks every call is awaited.

The results are typed: a wait for a child run of ``Task[P, R]`` gives a
:class:`WaitResult` of ``R``. A result is its own awaitable, so ``await``
(``async def`` tasks) and a plain call (``def`` tasks) both give the result, and
type checkers see the same type either way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from pydantic import BaseModel, ValidationError

from triggerfish._durations import parse_duration
from triggerfish.errors import TriggerfishError
from triggerfish.sdk._durable import DurableRun, _current, current
from triggerfish.sdk._tracing import child_traceparent

if TYPE_CHECKING:
    from triggerfish.sdk._task import Task

T = TypeVar("T")


class _Ready:
    """Awaiting it gives it back at once: results of calls that already happened."""

    def __await__(self) -> Generator[Any, None, Self]:
        return self
        yield  # unreachable: it makes this a generator that finishes at once


class WaitFailedError(TriggerfishError):
    """``unwrap()`` of a wait that did not succeed: a timeout or a failed child run."""

    def __init__(self, message: str, error: Any) -> None:
        self.error = error
        super().__init__(message)


@dataclass(frozen=True)
class WaitResult(_Ready, Generic[T]):
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
    output: T | None = None
    error: Any = None
    id: str | None = None

    def unwrap(self) -> T:
        """``output``, or raise :class:`WaitFailedError` when the wait did not succeed."""
        if self.ok:
            return self.output  # type: ignore[return-value]  # ok: the output is a T
        message = (self.error or {}).get("message") if isinstance(self.error, dict) else None
        raise WaitFailedError(
            f"{self.id or 'wait'} did not succeed: {message or self.error}", self.error
        )

    @classmethod
    def from_journal(cls, value: Any) -> WaitResult[Any]:
        data = value or {}
        return cls(
            ok=bool(data.get("ok")),
            output=data.get("output"),
            error=data.get("error"),
            id=data.get("id"),
        )


@dataclass(frozen=True)
class WaitToken(_Ready):
    """A token a human or another system completes: ``id`` for the API, ``url`` for a POST.

    ``schema`` is the model given to ``wait.create_token(schema=...)``:
    ``wait.for_token`` hands back an instance of it.
    """

    id: str
    url: str
    schema: type[BaseModel] | None = field(default=None, compare=False, repr=False)


M = TypeVar("M", bound=BaseModel)


def json_schema_of(schema: type[BaseModel], what: str) -> dict[str, Any]:
    """The JSON Schema the server checks a validated wait's input against."""
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"{what} schema=: a pydantic model class, got {schema!r}")
    return schema.model_json_schema()


def _validated(result: WaitResult[Any], schema: type[BaseModel] | None, event: bool) -> Any:
    """``result`` with its output as a ``schema`` instance (an event's payload)."""
    if schema is None or not result.ok:
        return result
    data = (result.output or {}).get("payload") if event else result.output
    try:
        model = schema.model_validate(data)
    except ValidationError as exc:  # completed before the schema applied
        error = {"code": "TRIGGER_WAIT_INVALID", "message": str(exc)}
        return WaitResult(ok=False, error=error, id=result.id)
    ident = (result.output or {}).get("id") if event else result.id
    return WaitResult(ok=True, output=model, id=ident)


def _seconds_between(until: datetime) -> float:
    when = until if until.tzinfo else until.replace(tzinfo=UTC)
    return when.timestamp() - time.time()


class WaitResults(list[WaitResult[T]], _Ready):
    """``batch_trigger_and_wait``'s results, in item order (a list, also awaitable)."""


class _Done:
    """What a wait that ended returns: ``await`` it in ``async def`` tasks."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # unreachable: it makes this a generator that finishes at once


_DONE = _Done()


class Wait:
    """The ``wait`` namespace. Use the module-level ``wait`` object."""

    # -- time -------------------------------------------------------------------

    def for_(
        self, *, seconds: float = 0, minutes: float = 0, hours: float = 0, days: float = 0
    ) -> Awaitable[None]:
        """Pause the run for this long (durably when above the suspend threshold).

        Example::

            await wait.for_(minutes=5)   # async def task
            wait.for_(days=1)            # def task
        """
        total = seconds + minutes * 60 + hours * 3600 + days * 86400
        if total < 0:
            raise ValueError("wait.for_ needs a duration of zero or more")
        return self._time(current("wait.for_"), {"type": "duration", "seconds": total}, total)

    def until(self, when: datetime) -> Awaitable[None]:
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

    def _time(self, run: DurableRun, spec: dict[str, Any], remaining: float) -> Awaitable[None]:
        seq, entry = run.next_call("wait", "wait")
        if entry is not None and entry["status"] == "OK":
            return _DONE
        if remaining > run.suspend_threshold:
            run.suspend(seq, "wait", "wait", spec)
            return _DONE
        if run.is_async:
            return self._sleep_async(run, seq, max(0.0, remaining))
        time.sleep(max(0.0, remaining))
        run.record(seq, "wait", "wait", "OK")
        return _DONE

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
        schema: type[BaseModel] | None = None,
    ) -> WaitToken:
        """Create a token that a person or system completes later.

        ``timeout`` is a duration (``"1h"``, seconds); the token's ``url``
        completes it with a plain HTTP POST of JSON, no API key needed. With
        ``schema`` (a pydantic model) the server refuses data that does not
        satisfy it (422 naming the field; the token stays open), and
        ``wait.for_token`` hands back a model instance with its defaults.

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
            if schema is not None:
                body["schema"] = json_schema_of(schema, "wait.create_token")
            result = run.call("create_token", body)
            entry = {"seq": seq, "kind": "token.create", "name": "token", "status": "OK"}
            entry["result"] = {"id": result["id"], "url": result["url"]}
            run.journal[seq] = entry
        return WaitToken(**run.result_of(seq, entry), schema=schema)

    @overload
    def for_token(self, token: WaitToken | str, *, schema: None = None) -> WaitResult[Any]: ...

    @overload
    def for_token(self, token: WaitToken | str, *, schema: type[M]) -> WaitResult[M]: ...

    def for_token(
        self, token: WaitToken | str, *, schema: type[BaseModel] | None = None
    ) -> WaitResult[Any]:
        """Suspend until the token is completed or times out; returns a :class:`WaitResult`.

        With ``schema`` (or a token made with ``create_token(schema=...)``) the
        output is an instance of that pydantic model; data that does not satisfy
        it is refused to whoever completes the token (422), and the wait stays open.

        Example::

            class Review(BaseModel):
                response: str = Field(min_length=1)
                approved: bool = True

            token = wait.create_token(timeout="7d", schema=Review)
            review = wait.for_token(token).unwrap()   # a Review
        """
        token_id = token.id if isinstance(token, WaitToken) else str(token)
        if schema is None and isinstance(token, WaitToken):
            schema = token.schema
        spec: dict[str, Any] = {"type": "token", "id": token_id}
        if schema is not None:
            spec["schema"] = json_schema_of(schema, "wait.for_token")
        result = self._suspend(current("wait.for_token"), "token.wait", "token", spec)
        return _validated(result, schema, event=False)  # type: ignore[no-any-return]

    def complete_token(self, token: WaitToken | str, data: Any = None) -> Awaitable[None]:
        """Complete a token with ``data`` (JSON); completing it again changes nothing.

        Works inside a task (through the worker) and outside (through the
        default client).
        """
        token_id = token.id if isinstance(token, WaitToken) else str(token)
        run = _current.get()
        if run is None:
            from triggerfish.sdk._client import default_client

            default_client().waitpoints.complete_token(token_id, data)
            return _DONE
        run.call("complete_token", {"id": token_id, "data": data})
        return _DONE

    # -- events -----------------------------------------------------------------

    @overload
    def for_event(
        self,
        name: str,
        match: dict[str, Any] | None = None,
        timeout: str | float | None = None,
        *,
        id: str | None = None,
        schema: None = None,
    ) -> WaitResult[dict[str, Any]]: ...

    @overload
    def for_event(
        self,
        name: str,
        match: dict[str, Any] | None = None,
        timeout: str | float | None = None,
        *,
        id: str | None = None,
        schema: type[M],
    ) -> WaitResult[M]: ...

    def for_event(
        self,
        name: str,
        match: dict[str, Any] | None = None,
        timeout: str | float | None = None,
        *,
        id: str | None = None,
        schema: type[BaseModel] | None = None,
    ) -> WaitResult[Any]:
        """Suspend until an event ``name`` whose payload contains ``match`` is sent.

        With ``id`` only the event sent with that id resumes it
        (``events.send(name, payload, id=...)``: a correlation id such as an
        approval request's); one sent before the wait began counts too.
        Returns a :class:`WaitResult`: ``output`` is ``{"id", "name",
        "payload"}``; after ``timeout`` it is not ok.

        With ``schema`` (a pydantic model) only a payload that satisfies it
        completes the wait, and ``output`` is the payload as a model instance
        (``id`` is the event's id). An event addressed to the wait by ``id``
        whose payload does not satisfy it is refused to its sender (422 naming
        the field, nothing recorded) and the wait stays open; other waits for
        the name simply stay open.

        Example::

            result = await wait.for_event("content.approved", id=f"content-approval-{draft}",
                                          timeout="1h")
            result = await wait.for_event("content.approved", match={"draft_id": "d1"})
        """
        spec: dict[str, Any] = {"type": "event", "name": name, "match": match or {}}
        if id is not None:
            if not isinstance(id, str) or not 0 < len(id) <= 128:
                raise ValueError("wait.for_event id=: a string of 1 to 128 characters")
            spec["id"] = id
        if schema is not None:
            spec["schema"] = json_schema_of(schema, "wait.for_event")
        if timeout is not None:
            spec["timeout"] = parse_duration(timeout)
        result = self._suspend(current("wait.for_event"), "event.wait", name, spec)
        return _validated(result, schema, event=True)  # type: ignore[no-any-return]

    def _suspend(
        self, run: DurableRun, kind: str, name: str, spec: dict[str, Any]
    ) -> WaitResult[Any]:
        seq, entry = run.next_call(kind, name)
        if entry is not None and entry["status"] == "OK":
            value = run.result_of(seq, entry)
        else:
            value = run.suspend(seq, kind, name, spec)
        return WaitResult.from_journal(value)


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


def wait_for_run(task: Task[Any, T], payload: Any, options: dict[str, Any]) -> WaitResult[T]:
    """Trigger a child run of ``task`` and suspend until it finishes (one durable call)."""
    return WaitResult.from_journal(_wait_for_runs(task, [payload], options, batch=False))


def wait_for_batch(task: Task[Any, T], items: list[Any], options: dict[str, Any]) -> WaitResults[T]:
    """Trigger one child run per item and suspend until all finish (one durable call)."""
    value = _wait_for_runs(task, items, options, batch=True)
    return WaitResults(WaitResult.from_journal(v) for v in value or [])


def _wait_for_runs(
    task: Task[Any, Any], items: list[Any], options: dict[str, Any], *, batch: bool
) -> Any:
    from triggerfish.sdk._options import wire_options

    what = "batch_trigger_and_wait" if batch else "trigger_and_wait"
    run = current(f"{task.id}.{what}")
    shared = dict(options)
    cancel = bool(shared.pop("cancel_with_parent", True))
    timeout = shared.pop("timeout", None)
    kind = "batch" if batch else "child"
    seq, entry = run.next_call(kind, task.id)
    if entry is not None and entry["status"] == "OK":
        return run.result_of(seq, entry)
    wire = []
    for item in items:
        payload, own = (item.payload, item.options) if isinstance(item, BatchItem) else (item, {})
        wire.append(
            {
                "task_id": task.id,
                "payload": task.dump_payload(payload),
                "options": wire_options({**shared, **own}, also_valid=_WAIT_ONLY),
            }
        )
    spec: dict[str, Any] = {"type": "runs", "items": wire, "cancel_children": cancel}
    if run.trace_id:  # the children's runs hang off this entry's span
        spec["traceparent"] = child_traceparent(run.trace_id, run.run_id, seq)
    if timeout is not None:
        spec["timeout"] = parse_duration(timeout)
    return run.suspend(seq, kind, task.id, spec)
