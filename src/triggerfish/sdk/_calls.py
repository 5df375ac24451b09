"""One definition per API call; its sync and async faces are made from it.

A call is defined once, as a function that takes the call's parameters and
returns a :class:`Call` (method, path, body, how to read the answer). Its faces
are generated, so the two cannot drift apart and mypy sees the definition's
own signature on both::

    def _retrieve(run_id: str) -> Call[Run]:
        \"\"\"Status, attempts, output, error and timestamps of a run.\"\"\"
        return Call("GET", f"/api/v3/runs/{run_id}", Run.model_validate)

    class Runs(Namespace):
        retrieve, retrieve_async = faces(_retrieve)   # client.runs.retrieve(id)

    retrieve, retrieve_async = default_faces(_retrieve)  # through the default client

A call that can also be made from inside a task, where the worker carries it
(``kv``, ``events``), names its worker operation in :attr:`Call.in_task`;
:func:`default_faces` sends it there when a task is running, and its async
face then waits for the worker on a thread, so the task's event loop runs on.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, cast

if TYPE_CHECKING:
    from triggerfish.sdk._client import Triggerfish

T = TypeVar("T")
P = ParamSpec("P")
#: a declared signature (see :func:`declared_face`)
S = TypeVar("S", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One API request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    #: the same call as (op, body) for the client socket, if it can go there
    over_socket: tuple[str, dict[str, Any]] | None = None
    #: the same call as (op, body) for the worker, when made inside a task
    in_task: tuple[str, dict[str, Any]] | None = None
    #: a trigger: the name of the caller's span around it, whose W3C
    #: ``traceparent`` goes with the request (a header, or a field of the frame)
    traced: str | None = None
    headers: dict[str, str] | None = None
    #: a POST the server recognises when it comes again with the same request key
    #: (``x-trigger-request-idempotency-key``): it may be sent to another server
    #: after the first one failed to answer (a trigger, a batch trigger)
    deduplicated: bool = False


@dataclass(frozen=True, slots=True)
class Subscription(Generic[T]):
    """A stream of server-sent events (``sdk/_sse.py``) and how to read each one:
    ``parse(event name, data)`` answers an item, or None to skip the event.
    The stream ends at the server's ``end`` event; a dropped one is resumed."""

    path: str
    parse: Callable[[str, Any], T | None]
    params: dict[str, Any] = field(default_factory=dict)


class Sender(Protocol):
    """What sends a :class:`Call`: the client's transport (``_transport.py``)."""

    def send(self, call: Call[T]) -> T: ...

    async def send_async(self, call: Call[T]) -> T: ...

    def subscribe(self, sub: Subscription[T]) -> Iterator[T]: ...

    def subscribe_async(self, sub: Subscription[T]) -> AsyncIterator[T]: ...


class Namespace:
    """A group of calls on one client (``client.runs``); its faces send with its transport."""

    def __init__(self, transport: Sender) -> None:
        self._t = transport

    def __init_subclass__(cls) -> None:
        # a face is named after its definition until here, where its own name is known
        for attr, value in vars(cls).items():
            if getattr(value, "__qualname__", None) == _FACE:
                value.__name__, value.__qualname__ = attr, f"{cls.__name__}.{attr}"


SyncFace = Callable[Concatenate[Namespace, P], T]
AsyncFace = Callable[Concatenate[Namespace, P], Coroutine[Any, Any, T]]


def faces(build: Callable[P, Call[T]]) -> tuple[SyncFace[P, T], AsyncFace[P, T]]:
    """The ``name`` and ``name_async`` methods of a namespace for the call ``build`` defines."""

    def sync(self: Namespace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._t.send(build(*args, **kwargs))

    async def async_(self: Namespace, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._t.send_async(build(*args, **kwargs))

    for face in (sync, async_):
        face.__doc__, face.__module__, face.__qualname__ = build.__doc__, build.__module__, _FACE
    return sync, async_


def subscription_faces(
    build: Callable[P, Subscription[T]],
) -> tuple[
    Callable[Concatenate[Namespace, P], Iterator[T]],
    Callable[Concatenate[Namespace, P], AsyncIterator[T]],
]:
    """The ``name`` (an iterator) and ``name_async`` (an async iterator) methods of a
    namespace for the subscription ``build`` defines."""

    def sync(self: Namespace, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._t.subscribe(build(*args, **kwargs))

    async def async_(self: Namespace, /, *args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        async for item in self._t.subscribe_async(build(*args, **kwargs)):
            yield item

    for face in (sync, async_):
        face.__doc__, face.__module__, face.__qualname__ = build.__doc__, build.__module__, _FACE
    return sync, async_


#: the qualified name of a namespace's face until the class is made
_FACE = "<face>"


def default_faces(
    build: Callable[P, Call[T]],
) -> tuple[Callable[P, T], Callable[P, Coroutine[Any, Any, T]]]:
    """Module-level ``name`` and ``name_async`` sent by the default client.

    Inside a task, a call with :attr:`Call.in_task` goes to the worker instead.
    ``client=`` (a :class:`~triggerfish.Triggerfish`) sends it with that client;
    it is read here, before the definition sees the arguments.
    """

    def sync(*args: P.args, **kwargs: P.kwargs) -> T:
        client: Triggerfish | None = kwargs.pop("client", None)  # type: ignore[assignment]
        call = build(*args, **kwargs)
        run = _running_task(call, client)
        if run is not None:
            assert call.in_task is not None  # _running_task checked it
            return call.parse(run.call(*call.in_task))
        return _resolve(client)._transport.send(call)

    async def async_(*args: P.args, **kwargs: P.kwargs) -> T:
        client: Triggerfish | None = kwargs.pop("client", None)  # type: ignore[assignment]
        call = build(*args, **kwargs)
        run = _running_task(call, client)
        if run is not None:
            assert call.in_task is not None
            return call.parse(await run.call_async(*call.in_task))
        return await _resolve(client)._transport.send_async(call)

    _name(sync, build, "")
    _name(async_, build, "_async")
    return sync, async_


def declared_face(build: Callable[P, Call[T]], *, is_async: bool = False) -> Callable[[S], S]:
    """A module-level face of ``build`` (see :func:`default_faces`) whose type is the
    function it decorates: ``build``'s parameters, then ``client: Triggerfish | None
    = None``, keyword-only, which a ``ParamSpec`` cannot add.

    The declaration is only a signature (its body never runs): it is checked
    against ``build`` when the module is imported (the same parameters, kinds,
    defaults and annotations, and the answer ``build``'s ``Call`` reads), so the
    two cannot drift apart.

    Example::

        @declared_face(_calls._retrieve)
        def retrieve(schedule_id: str, *, client: Triggerfish | None = None) -> Schedule:
            raise NotImplementedError
    """
    sync, async_ = default_faces(build)

    def replace(declared: S) -> S:
        _check_declared(declared, build, is_async)
        face = async_ if is_async else sync
        # help() and inspect show the declared parameters, not (*args, **kwargs)
        face.__signature__ = inspect.signature(declared)  # type: ignore[union-attr]
        return cast(S, face)

    return replace


def _check_declared(
    declared: Callable[..., Any], build: Callable[..., Any], is_async: bool
) -> None:
    where = f"{declared.__module__}.{declared.__name__}"
    if inspect.iscoroutinefunction(declared) != is_async:
        raise TypeError(f"{where}: declare it {'async ' if is_async else ''}def")
    *own, client = inspect.signature(declared).parameters.values()
    if (client.name, client.kind, client.default) != ("client", client.KEYWORD_ONLY, None):
        raise TypeError(f"{where}: its last parameter must be `*, client: ... = None`")

    def shape(params: Any) -> list[tuple[Any, ...]]:
        return [(p.name, p.kind, p.default, p.annotation) for p in params]

    if shape(own) != shape(inspect.signature(build).parameters.values()):
        raise TypeError(f"{where}: its parameters are not those of {build.__name__}")
    answer = inspect.signature(declared).return_annotation
    if f"Call[{answer}]" != inspect.signature(build).return_annotation:
        raise TypeError(f"{where}: it answers {answer}, {build.__name__} reads another type")


class DefaultNamespace:
    """A module-level namespace (``kv``, ``events``, ``envvars``) of :func:`declared_face`
    static methods; each is named after its attribute here.

    A static method that is not a declared face is refused when the class is
    made: its ``client=`` would reach the call through ``**kwargs``, unseen by
    type checkers.
    """

    def __init_subclass__(cls) -> None:
        for attr, value in vars(cls).items():
            if isinstance(value, staticmethod):
                if not hasattr(value.__func__, "__signature__"):
                    raise TypeError(f"{cls.__name__}.{attr}: declare it with @declared_face")
                value.__func__.__name__ = attr
                value.__func__.__qualname__ = f"{cls.__name__}.{attr}"


def _running_task(call: Call[Any], client: Triggerfish | None) -> Any:
    """The task running in this process, when ``call`` should go through its worker."""
    if call.in_task is None or client is not None:
        return None
    from triggerfish.sdk._durable import _current

    return _current.get()


def _resolve(client: Triggerfish | None) -> Triggerfish:
    from triggerfish.sdk._client import resolve_client

    return resolve_client(client)


def _name(face: Callable[..., Any], build: Callable[..., Any], suffix: str) -> None:
    """Name a face after its definition (``_retrieve`` -> ``retrieve_async``), with its doc."""
    name = build.__name__.lstrip("_") + suffix
    face.__name__ = face.__qualname__ = name
    face.__module__ = build.__module__
    face.__doc__ = build.__doc__
