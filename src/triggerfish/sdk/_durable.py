"""The replay runtime inside a task process: every durable call goes through here.

A run's journal arrives with the claimed attempt. Each durable call (``step.run``,
``wait.*``, ``trigger_and_wait``…) takes the next position in call order and

- finds an entry there: checks it is the same kind of call with the same name
  (else :class:`NonDeterminismError`) and returns its recorded result, or raises
  its recorded failure, without doing anything;
- finds none: does the call and records the outcome through the worker before
  returning, so a crash after this point never repeats it.

The worker relays records over the process pipe (``transport``); the server
refuses them once the attempt is no longer current, and the task is stopped.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from triggerfish._domain.retry import RetryPolicy
from triggerfish.errors import ApiError, NonDeterminismError, RunSuspended, StepFailedError
from triggerfish.sdk._context import StepInfo, current_step
from triggerfish.sdk._tracing import StepSpan
from triggerfish.sdk._values import describe_error, to_json_value

#: sends ``(op, body)`` to the worker and returns its answer
Transport = Callable[[str, dict[str, Any]], dict[str, Any]]


class AttemptAbandoned(BaseException):
    """The server no longer accepts this attempt's records (reclaimed, canceled)."""


@dataclass
class DurableRun:
    """The durable state of one attempt: its journal and the next call position."""

    run_id: str
    attempt_id: str
    task_id: str
    retry: RetryPolicy
    is_async: bool
    transport: Transport
    loop: asyncio.AbstractEventLoop | None
    journal: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: waits up to this many seconds sleep in place instead of suspending
    suspend_threshold: float = 5.0
    seq: int = 0
    #: the run's trace (hex), and whether this process exports spans (``_tracing``)
    trace_id: str = ""
    traced: bool = False
    #: task code's spans are collected for the run's stored trace (``_tracing``)
    collecting: bool = False
    #: one call at a time on the transport: an async call waits for it on a thread
    _calling: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- the one path every durable call takes --------------------------------

    def next_call(self, kind: str, name: str) -> tuple[int, dict[str, Any] | None]:
        """Claim the next position; the recorded entry there, checked, if any."""
        seq = self.seq
        self.seq += 1
        entry = self.journal.get(seq)
        if entry is not None and (entry["kind"], entry["name"]) != (kind, name):
            raise NonDeterminismError(
                f"step {seq + 1}: the journal has {_call(entry['kind'], entry['name'])}, "
                f"the code called {_call(kind, name)}; code between durable calls must "
                "make the same calls in the same order on every replay (put side effects "
                "and anything random or time-dependent inside step.run)"
            )
        return seq, entry

    def result_of(self, seq: int, entry: dict[str, Any]) -> Any:
        """A recorded result, fetching it when it was stored out of line."""
        if entry.get("result_blob"):
            answer = self.call("blob", {"seq": seq})
            entry["result"], entry["result_blob"] = answer.get("result"), False
        return entry.get("result")

    def record(self, seq: int, kind: str, name: str, status: str, **fields: Any) -> None:
        entry = {"seq": seq, "kind": kind, "name": name, "status": status, **fields}
        self.call("journal", entry)
        self.journal[seq] = entry

    def call(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._calling:
            answer = self.transport(op, body)
        status = answer.get("_status")
        if status is None:
            return answer
        if status == 409:
            raise AttemptAbandoned(answer.get("error", "the attempt is no longer current"))
        raise ApiError(int(status), str(answer.get("error", "worker API call failed")))

    async def call_async(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """:meth:`call` without blocking the event loop: the worker's answer is awaited
        on a thread (the transport blocks until it arrives)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.call, op, body)

    def suspend(self, seq: int, kind: str, name: str, wait: dict[str, Any]) -> Any:
        """Ask the server to park the run on ``wait``; its result if already resolved."""
        answer = self.call("wait", {"seq": seq, "kind": kind, "name": name, "wait": wait})
        if answer.get("status") == "resolved":
            self.journal[seq] = {"seq": seq, "kind": kind, "name": name, "status": "OK"}
            self.journal[seq]["result"] = answer.get("result")
            return answer.get("result")
        raise RunSuspended(f"run {self.run_id} waits on {kind} at step {seq + 1}")


def _call(kind: str, name: str) -> str:
    return f"{kind}({name!r})" if name and name != kind else f"{kind}()"


_current: contextvars.ContextVar[DurableRun | None] = contextvars.ContextVar(
    "triggerfish_durable_run", default=None
)


def activate(run: DurableRun | None) -> contextvars.Token[DurableRun | None]:
    return _current.set(run)


def deactivate(token: contextvars.Token[DurableRun | None]) -> None:
    _current.reset(token)


def current(what: str) -> DurableRun:
    run = _current.get()
    if run is None:
        raise RuntimeError(
            f"{what} can only be called inside a task that a worker is running "
            "(it is recorded in the run's journal)"
        )
    return run


# -- step.run -------------------------------------------------------------------


def _display_attributes(display: dict[str, Any] | None) -> dict[str, Any]:
    """A step's display fields as span attributes (as ``engine/traces.py`` names them)."""
    if not display:
        return {}
    attrs: dict[str, Any] = {}
    if display.get("name"):
        attrs["triggerfish.step.name"] = str(display["name"])
    if display.get("icon"):
        attrs["triggerfish.step.icon"] = str(display["icon"])
    for key, value in (display.get("properties") or {}).items():
        plain = isinstance(value, str | int | float | bool)
        attrs[f"triggerfish.step.properties.{key}"] = value if plain else str(value)
    return attrs


#: the stack trace kept for each failed try in a step's history (the last
#: failure keeps its whole trace in the entry's ``error``)
TRY_TRACE_CHARS = 4000


class _Step:
    """One ``step.run`` call's decisions, shared by its sync and async faces."""

    def __init__(
        self,
        run: DurableRun,
        key: str,
        retry: RetryPolicy | None,
        display: dict[str, Any] | None = None,
    ) -> None:
        self.run, self.name = run, key
        self.policy = retry or run.retry
        self.display = display or None
        self.seq, entry = run.next_call("step", key)
        self.failures = 0
        self.tries: list[dict[str, Any]] = []
        self.done = False
        self.value: Any = None
        self.started = time.time()
        self.span: StepSpan | None = None
        if entry is None:
            self._traced()
            return
        if entry["status"] == "OK":
            self.done, self.value = True, run.result_of(self.seq, entry)
        elif entry["status"] == "ERROR":
            raise StepFailedError(key, entry.get("error") or {}, int(entry.get("failures") or 1))
        else:  # RETRYING: tries failed before a crash or suspension still count
            self.failures = int(entry.get("failures") or 0)
            self.tries = list(entry.get("tries") or [])
            self._traced()

    def _traced(self) -> None:
        if self.run.traced:
            self.span = StepSpan(
                self.run.run_id, self.seq, self.name, _display_attributes(self.display)
            )
        elif self.run.collecting:  # task code's spans nest under the step all the same
            self.span = StepSpan(
                self.run.run_id, self.seq, self.name, {}, record=False, trace_id=self.run.trace_id
            )

    def info(self) -> StepInfo:
        """What ``ctx.step`` says while this try runs."""
        display = self.display or {}
        return StepInfo(
            key=self.name,
            attempt=self.failures + 1,
            name=display.get("name") or self.name,
            icon=display.get("icon"),
            properties=display.get("properties"),
        )

    def _record(self, status: str, **fields: Any) -> None:
        if self.display:
            fields["display"] = self.display
        if self.tries:
            fields["tries"] = self.tries
        self.run.record(self.seq, "step", self.name, status, started_at=self.started, **fields)

    def succeeded(self, value: Any) -> Any:
        data = to_json_value(value, f"step {self.name!r}")
        if self.failures:
            self._record("OK", result=data, failures=self.failures)
        else:
            self._record("OK", result=data)
        if self.span is not None:
            self.span.end(self.failures + 1)
        return data

    def failed(self, exc: Exception) -> float:
        """Record a failed try; the delay before the next one, or raise when none is left."""
        self.failures += 1
        error = describe_error(exc, "USER")
        error.pop("kind")
        kept = dict(error, stack_trace=str(error.get("stack_trace", ""))[-TRY_TRACE_CHARS:])
        self.tries.append({"number": self.failures, "at": time.time(), "error": kept})
        if self.failures >= self.policy.max_attempts:
            if self.span is not None:
                self.span.end(self.failures, exc)
            self._record("ERROR", error=error, failures=self.failures)
            raise StepFailedError(self.name, error, self.failures) from exc
        if self.span is not None:
            self.span.retried(self.failures, exc)
        self._record("RETRYING", error=error, failures=self.failures)
        return self.policy.delay_after(self.failures)


def step_display(
    name: str | None, icon: str | None, properties: dict[str, Any] | None
) -> dict[str, Any] | None:
    """``step.run``'s display fields as the journal keeps them; ``TypeError`` when
    one is not what the trace can show."""
    display: dict[str, Any] = {}
    if name is not None:
        if not isinstance(name, str) or not name or len(name) > 256:
            raise TypeError("step.run name=: a string of 1 to 256 characters")
        display["name"] = name
    if icon is not None:
        if not isinstance(icon, str) or not icon or len(icon) > 64:
            raise TypeError("step.run icon=: a string of 1 to 64 characters")
        display["icon"] = icon
    if properties is not None:
        if not isinstance(properties, dict) or not all(isinstance(k, str) for k in properties):
            raise TypeError("step.run properties=: a dict with string keys")
        display["properties"] = to_json_value(properties, "step.run properties=")
    return display or None


def run_step_sync(
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    retry: RetryPolicy | None,
    display: dict[str, Any] | None = None,
) -> Any:
    run = current("step.run")
    step = _Step(run, key, retry, display)
    while not step.done:
        failure: Exception | None = None
        token = current_step.set(step.info())
        try:
            value = fn(*args)
            if asyncio.iscoroutine(value):
                assert run.loop is not None
                value = run.loop.run_until_complete(value)
        except Exception as exc:
            failure = exc
        finally:
            current_step.reset(token)
        if failure is not None:
            time.sleep(step.failed(failure))
            continue
        return step.succeeded(value)
    return step.value


async def run_step_async(
    key: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    retry: RetryPolicy | None,
    display: dict[str, Any] | None = None,
) -> Any:
    run = current("step.run")
    step = _Step(run, key, retry, display)
    while not step.done:
        failure: Exception | None = None
        token = current_step.set(step.info())
        try:
            value = fn(*args)
            if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                value = await value
        except Exception as exc:
            failure = exc
        finally:
            current_step.reset(token)
        if failure is not None:
            await asyncio.sleep(step.failed(failure))
            continue
        return step.succeeded(value)
    return step.value
