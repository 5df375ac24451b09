"""``@task``: turn a function into a task that can be triggered and run by workers."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    Unpack,
    get_type_hints,
    overload,
)

import pydantic

from triggerfish._domain.machines import DEFAULT_MACHINE, check_machine
from triggerfish._domain.retry import RetryPolicy
from triggerfish.errors import InvalidTaskOptions, PayloadValidationError
from triggerfish.sdk._hooks import Hook, Hooks, Middleware, hooks_of
from triggerfish.sdk._queue import Queue
from triggerfish.sdk._registry import current_registry

if TYPE_CHECKING:
    from triggerfish.sdk._context import Context
    from triggerfish.sdk._models import BatchHandle
    from triggerfish.sdk._options import TaskTriggerOptions, TriggerOptions, WaitOptions
    from triggerfish.sdk._wait import BatchItem, WaitResult, WaitResults

#: the payload type a task takes
P = TypeVar("P")
#: the output type a task returns (awaited, for ``async def`` tasks)
R = TypeVar("R")

_TASK_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/")


@dataclass(frozen=True)
class ErrorDecision:
    """What a ``catch_error`` hook wants done with a failed attempt.

    Example::

        def on_error(payload, error, ctx):
            if isinstance(error, RateLimited):
                return ErrorDecision.retry(delay=60)
            if isinstance(error, BadInput):
                return ErrorDecision.fail()
            return None  # use the task's retry policy

        @task(id="call-api", catch_error=on_error)
        def call_api(payload: dict) -> dict: ...
    """

    action: Literal["retry", "fail", "skip"]
    delay: float | None = None
    output: Any = None

    @classmethod
    def retry(cls, delay: float | None = None) -> ErrorDecision:
        """Retry (if attempts remain), after ``delay`` seconds or the policy's backoff."""
        return cls("retry", delay=delay)

    @classmethod
    def fail(cls) -> ErrorDecision:
        """Fail the run now without further retries."""
        return cls("fail")

    @classmethod
    def skip(cls, output: Any = None) -> ErrorDecision:
        """Swallow the error: the run completes successfully with ``output``."""
        return cls("skip", output=output)


CatchError = Callable[[Any, BaseException, Any], "ErrorDecision | None"]


@dataclass(frozen=True)
class RunHandle:
    """Returned by ``trigger``: the new run's id, at once, before it starts."""

    id: str
    is_cached: bool = False


class Task(Generic[P, R]):
    """A function the platform can run. Made by :func:`task`; not built directly.

    ``P`` is the payload type and ``R`` the output type, read from the function:
    ``@task`` on ``def f(p: Email) -> Receipt`` (or ``async def``) is a
    ``Task[Email, Receipt]``, so ``f.trigger(...)`` checks its payload and
    ``f.trigger_and_wait(...)`` gives a ``WaitResult[Receipt]``.
    """

    #: ``{"cron": str | None, "timezone": str}`` for tasks made by ``schedules.task``
    schedule: dict[str, Any] | None = None

    def __init__(
        self,
        fn: Callable[..., R] | Callable[..., Awaitable[R]],
        *,
        id: str,
        retry: RetryPolicy,
        max_duration: float | None,
        machine: str,
        queue: Queue,
        catch_error: CatchError | None,
        on_event: str | None,
        explicit: frozenset[str] = frozenset({"retry", "max_duration", "machine"}),
        hooks: Hooks | None = None,
    ) -> None:
        self.fn = fn
        #: the settings the decorator gave (the project configuration fills the others)
        self.explicit = explicit
        #: lifecycle hooks and middleware of this task (``sdk/_hooks.py``)
        self.hooks = hooks or Hooks()
        self.id = id
        self.retry = retry
        self.max_duration = max_duration
        self.machine = machine
        self.queue = queue
        self.catch_error = catch_error
        self.on_event = on_event
        self.is_async = inspect.iscoroutinefunction(fn)
        self.qualname = f"{fn.__module__}.{fn.__qualname__}"
        self.file = _source_file(fn)
        self.payload_model, self.takes_ctx, annotation = _inspect_signature(fn, id)
        #: the JSON schema a trigger's payload must match, checked by the server
        #: when the run is triggered (``payload: dict`` takes only an object)
        self.payload_schema = (
            self.payload_model.model_json_schema()
            if self.payload_model
            else _schema_of(annotation, id)
        )

    def __repr__(self) -> str:
        return f"<Task {self.id!r} ({self.qualname})>"

    def apply_defaults(
        self,
        *,
        retry: RetryPolicy | None = None,
        max_duration: float | None = None,
        machine: str | None = None,
    ) -> None:
        """The project configuration's defaults, for what the decorator left unset
        (a trigger's own options still win over both)."""
        if retry is not None and "retry" not in self.explicit:
            self.retry = retry
        if max_duration is not None and "max_duration" not in self.explicit:
            self.max_duration = max_duration
        if machine is not None and "machine" not in self.explicit:
            self.machine = machine

    # -- payloads -----------------------------------------------------------------

    def validate_payload(self, payload: Any) -> Any:
        """The payload as the function receives it; raises ``PayloadValidationError``."""
        if self.payload_model is None:
            return payload
        if isinstance(payload, self.payload_model):
            return payload
        try:
            return self.payload_model.model_validate(payload)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in ("payload", *first["loc"]))
            raise PayloadValidationError(where, first["msg"]) from None

    def dump_payload(self, payload: Any) -> Any:
        """The JSON value sent over the wire for ``payload``."""
        value = self.validate_payload(payload)
        if isinstance(value, pydantic.BaseModel):
            return value.model_dump(mode="json")
        return value

    def manifest(self) -> dict[str, Any]:
        """What a worker tells the server about this task when it registers."""
        return {
            "id": self.id,
            "retry": self.retry.to_json(),
            "max_duration": self.max_duration,
            "machine": self.machine,
            "queue": self.queue.to_json(),
            "payload_schema": self.payload_schema,
            "on_event": self.on_event,
            "entry": self.qualname,
            "file": self.file,
            "schedule": self.schedule,
        }

    # -- triggering ---------------------------------------------------------------

    def trigger(self, payload: P, **options: Unpack[TaskTriggerOptions]) -> RunHandle:
        """Queue a run of this task and return its handle at once.

        Options (all optional): ``tags``, ``metadata``, ``idempotency_key``,
        ``idempotency_key_ttl``, ``machine``, ``max_attempts``, ``max_duration``,
        ``queue``, ``concurrency_key``, ``delay``, ``ttl``, ``priority``,
        ``debounce``, and ``client`` to use another :class:`~triggerfish.Triggerfish`
        client (see :class:`~triggerfish.sdk._options.TriggerOptions`). An unknown
        option is a type error and, at run time, a ``TypeError`` naming the valid ones.

        Example::

            handle = hello_world.trigger({"who": "Ada"}, tags=["demo"])
            run = triggerfish.runs.poll(handle.id, timeout=30)
        """
        from triggerfish.sdk._client import resolve_client

        client = resolve_client(options.pop("client", None))
        rest: TriggerOptions = options  # the client is out: the rest go on the wire
        return client.tasks.trigger(self.id, self.dump_payload(payload), **rest)

    async def trigger_async(self, payload: P, **options: Unpack[TaskTriggerOptions]) -> RunHandle:
        """``trigger`` for async apps: ``await my_task.trigger_async(payload)``."""
        from triggerfish.sdk._client import resolve_client

        client = resolve_client(options.pop("client", None))
        rest: TriggerOptions = options
        return await client.tasks.trigger_async(self.id, self.dump_payload(payload), **rest)

    def batch_trigger(
        self, items: list[P | BatchItem], **options: Unpack[TaskTriggerOptions]
    ) -> BatchHandle:
        """Queue one run of this task per item, in one call; the batch's handle at once.

        Items are payloads, or :class:`~triggerfish.BatchItem` with their own
        options (which win over ``options``, shared by every item). Up to 1,000
        items; the server triggers them in one transaction.

        Example::

            batch = send_email.batch_trigger([{"to": a} for a in addresses], tags=["bulk"])
            print(batch.id, len(batch.run_ids))
        """
        from triggerfish.sdk._client import resolve_client

        client = resolve_client(options.pop("client", None))
        return client.tasks.batch_trigger(self._batch_items(items, dict(options)))

    async def batch_trigger_async(
        self, items: list[P | BatchItem], **options: Unpack[TaskTriggerOptions]
    ) -> BatchHandle:
        """``batch_trigger`` for async apps: ``await my_task.batch_trigger_async(items)``."""
        from triggerfish.sdk._client import resolve_client

        client = resolve_client(options.pop("client", None))
        return await client.tasks.batch_trigger_async(self._batch_items(items, dict(options)))

    def _batch_items(
        self, items: list[P | BatchItem], shared: dict[str, Any]
    ) -> list[dict[str, Any]]:
        from triggerfish.sdk._wait import BatchItem

        out = []
        for item in items:
            if isinstance(item, BatchItem):
                payload, own = item.payload, item.options
            else:
                payload, own = item, {}
            out.append(
                {"task": self.id, "payload": self.dump_payload(payload), "options": shared | own}
            )
        return out

    # -- triggering from a task and waiting ------------------------------------------

    def trigger_and_wait(self, payload: P, **options: Unpack[WaitOptions]) -> WaitResult[R]:
        """Inside a task: run this task as a child and wait for it, durably.

        The parent is suspended (``WAITING``) while the child runs and resumes
        with a :class:`~triggerfish.WaitResult`: ``ok`` and ``output``, or the
        child's ``error``; nothing is raised unless you call ``.unwrap()``.
        Options are those of :meth:`trigger`, plus ``cancel_with_parent``
        (default True: canceling the waiting parent cancels the child) and
        ``timeout`` (``"1h"``, seconds): the parent stops waiting then, with a
        not-ok result (the child runs on).
        Awaited in ``async def`` tasks.

        Example::

            result = await render.trigger_and_wait({"page": 1})
            html = result.unwrap()
        """
        from triggerfish.sdk._wait import wait_for_run

        return wait_for_run(self, payload, dict(options))

    def batch_trigger_and_wait(
        self, items: list[P | BatchItem], **options: Unpack[WaitOptions]
    ) -> WaitResults[R]:
        """Inside a task: run one child per item, wait for all; results in item order.

        Items are payloads, or :class:`~triggerfish.BatchItem` with their own options.

        Example::

            results = await render.batch_trigger_and_wait([{"page": p} for p in range(10)])
            pages = [r.unwrap() for r in results]
        """
        from triggerfish.sdk._wait import wait_for_batch

        return wait_for_batch(self, list(items), dict(options))


def task(
    *,
    id: str,
    retry: RetryPolicy | None = None,
    max_duration: float | None = None,
    machine: str | None = None,
    queue: Queue | None = None,
    catch_error: CatchError | None = None,
    on_event: str | None = None,
    init: Hook | Sequence[Hook] | None = None,
    cleanup: Hook | Sequence[Hook] | None = None,
    on_start: Hook | Sequence[Hook] | None = None,
    on_success: Hook | Sequence[Hook] | None = None,
    on_failure: Hook | Sequence[Hook] | None = None,
    on_complete: Hook | Sequence[Hook] | None = None,
    on_wait: Hook | Sequence[Hook] | None = None,
    on_resume: Hook | Sequence[Hook] | None = None,
    middleware: Middleware | Sequence[Middleware] | None = None,
) -> TaskDecorator:
    """Declare a task.

    The function takes the payload and, optionally, a :class:`Context`. The
    payload's annotation is checked when the run is triggered, by the server: a
    pydantic model field by field, ``dict`` as a JSON object, ``list[int]`` as
    an array of integers (``Any`` or none: anything). ``def`` and ``async def``
    both work.

    Without ``retry=``, a run gets 3 attempts, 1 s then 2 s apart (doubling,
    at most 30 s, give or take 10%): ``retry(max_attempts=3, factor=2,
    min_delay=1, max_delay=30, jitter=0.1)``. ``retry(max_attempts=1)`` never retries.

    ``retry``, ``max_duration`` and ``machine`` left out take the project
    configuration's defaults (``[tool.triggerfish]``), else the built-in ones.

    ``init``, ``cleanup``, ``on_start``, ``on_success``, ``on_failure``,
    ``on_complete``, ``on_wait``, ``on_resume`` and ``middleware`` take a function
    or a list of them; their order and what happens when one raises are in
    ``sdk/_hooks.py``.

    Example::

        from triggerfish import task, retry, logger

        @task(id="hello-world", retry=retry(max_attempts=3), max_duration=300)
        async def hello_world(payload: dict, ctx) -> dict:
            logger.info("greeting", who=payload.get("who"))
            return {"message": f"Hello {payload.get('who', 'Stranger')}"}
    """
    _check_task_id(id)
    try:
        task_hooks = hooks_of(
            {
                "init": init,
                "cleanup": cleanup,
                "on_start": on_start,
                "on_success": on_success,
                "on_failure": on_failure,
                "on_complete": on_complete,
                "on_wait": on_wait,
                "on_resume": on_resume,
                "middleware": middleware,
            }
        )
    except TypeError as exc:
        raise InvalidTaskOptions(f"task {id!r}: {exc}") from None
    if max_duration is not None and max_duration <= 0:
        raise InvalidTaskOptions(f"task {id!r}: max_duration must be a positive number of seconds")
    try:
        if machine is not None:
            check_machine(machine, f"task {id!r}")
    except ValueError as exc:
        raise InvalidTaskOptions(str(exc)) from None
    given = {"retry": retry, "max_duration": max_duration, "machine": machine}
    explicit = frozenset(k for k, v in given.items() if v is not None)

    def decorate(fn: Callable[..., Any]) -> Task[Any, Any]:
        if not callable(fn):
            raise InvalidTaskOptions(f"task {id!r}: @task must decorate a function")
        made: Task[Any, Any] = Task(
            fn,
            id=id,
            retry=retry or RetryPolicy(),
            max_duration=max_duration,
            machine=machine or DEFAULT_MACHINE,
            queue=queue or Queue(f"task/{id}"),
            catch_error=catch_error,
            on_event=on_event,
            explicit=explicit,
            hooks=task_hooks,
        )
        current_registry().add(made)
        return made

    return decorate


class TaskDecorator(Protocol):
    """What ``@task(...)`` returns: it reads the payload and output types off the function.

    ``def`` and ``async def``, with or without ``ctx``, all give ``Task[P, R]``
    with ``R`` the (awaited) return type.
    """

    @overload
    def __call__(self, fn: Callable[[P], Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[[P, Context], Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[[P], R], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[[P, Context], R], /) -> Task[P, R]: ...


def _check_task_id(task_id: str) -> None:
    if not task_id or len(task_id) > 128 or not set(task_id) <= _TASK_ID_CHARS:
        raise InvalidTaskOptions(
            f"task id {task_id!r} is invalid: use 1-128 letters, digits and - _ . : /"
        )


def _inspect_signature(
    fn: Callable[..., Any], task_id: str
) -> tuple[type[pydantic.BaseModel] | None, bool, Any]:
    params = list(inspect.signature(fn).parameters.values())
    if not 1 <= len(params) <= 2:
        raise InvalidTaskOptions(
            f"task {task_id!r}: the function must take (payload) or (payload, ctx), "
            f"it takes {len(params)} parameters"
        )
    try:
        hints = get_type_hints(fn)
    except Exception:  # unresolvable forward references: treat as unannotated
        hints = {}
    annotation = hints.get(params[0].name)
    model = (
        annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)
        else None
    )
    return model, len(params) == 2, annotation


def _source_file(fn: Callable[..., Any]) -> str | None:
    """The file that defines ``fn``, relative to the working directory (the
    project root, for a worker) when it lies below it."""
    from pathlib import Path

    try:
        found = inspect.getsourcefile(fn)
    except TypeError:
        return None
    if found is None:
        return None
    path = Path(found)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _schema_of(annotation: Any, task_id: str) -> dict[str, Any] | None:
    """The JSON schema of a plain payload annotation (``dict``, ``list[int]``, a
    TypedDict…); None when unannotated or when it says nothing (``Any``, ``object``)."""
    if annotation is None or annotation is Any or annotation is object:
        return None
    try:
        schema = pydantic.TypeAdapter(annotation).json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError):
        return None  # a type with no JSON form: the task's own code checks it
    return schema or None
