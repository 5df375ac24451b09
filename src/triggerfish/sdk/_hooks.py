"""Lifecycle hooks and middleware, on a task and for every task of a worker.

Per attempt, inside the middleware (global ones outermost, then the task's)::

    init (global, then the task's)
    on_start            first attempt only: once per run
    on_resume           an attempt that continues after a durable wait
    the task's body
    on_success | on_failure    on_failure only once no attempt is left
    on_complete         after either, when the run's outcome is final
    on_wait             instead of the three above, when the run suspends
    cleanup (the task's, then global)   always, also after a failure

What raises where: ``init``, ``on_start``, ``on_resume`` and middleware fail the
attempt like the body would (retried per the policy); ``on_success``,
``on_failure``, ``on_complete``, ``on_wait`` and ``cleanup`` are logged to the
run's log and change nothing. Hooks are not journaled: on a replay of the
journal (a resumed or retried attempt) only ``init``, ``cleanup``, middleware
and ``on_resume`` run again; a step's effects never repeat, ``on_start`` runs
in the first attempt only. A run made by ``replay`` is a new run: its first
attempt runs ``on_start``.

Hooks take ``(payload, ctx)``; ``on_success`` ``(payload, output, ctx)``;
``on_failure`` ``(payload, error, ctx)``; ``on_complete`` ``(payload, outcome,
ctx)``. Any of them may be ``async``. Middleware is a plain function
``(payload, ctx, next)`` that returns ``next()``, for async tasks too (set a
context variable, open a session in a ``with`` around ``next()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Hook = Callable[..., Any]
Middleware = Callable[[Any, Any, Callable[[], Any]], Any]

HOOK_NAMES = (
    "init",
    "cleanup",
    "on_start",
    "on_success",
    "on_failure",
    "on_complete",
    "on_wait",
    "on_resume",
)


@dataclass(frozen=True)
class Outcome:
    """What ``on_complete`` gets: the run's final outcome."""

    ok: bool
    output: Any = None
    error: BaseException | None = None


@dataclass
class Hooks:
    init: list[Hook] = field(default_factory=list)
    cleanup: list[Hook] = field(default_factory=list)
    on_start: list[Hook] = field(default_factory=list)
    on_success: list[Hook] = field(default_factory=list)
    on_failure: list[Hook] = field(default_factory=list)
    on_complete: list[Hook] = field(default_factory=list)
    on_wait: list[Hook] = field(default_factory=list)
    on_resume: list[Hook] = field(default_factory=list)
    middleware: list[Middleware] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(getattr(self, n) for n in (*HOOK_NAMES, "middleware"))

    def then(self, inner: Hooks) -> Hooks:
        """These (global) hooks around ``inner`` (a task's): cleanup in reverse."""
        merged = Hooks(**{n: [*getattr(self, n), *getattr(inner, n)] for n in HOOK_NAMES})
        merged.cleanup = [*inner.cleanup, *self.cleanup]
        merged.middleware = [*self.middleware, *inner.middleware]
        return merged


def hooks_of(given: dict[str, Hook | Iterable[Hook] | None]) -> Hooks:
    """A task's hooks from ``@task(on_start=..., middleware=[...])`` arguments."""
    made = Hooks()
    for name, value in given.items():
        if value is None:
            continue
        fns = [value] if callable(value) else list(value)
        for fn in fns:
            if not callable(fn):
                raise TypeError(f"{name}: expected a function, got {fn!r}")
        getattr(made, name).extend(fns)
    return made


_GLOBAL = Hooks()


def global_hooks() -> Hooks:
    return _GLOBAL


class GlobalHooks:
    """``triggerfish.hooks``: hooks and middleware for every task of the worker that
    imports them (register them in a task file or a module it imports)::

        from triggerfish import hooks

        @hooks.on_failure
        def page_someone(payload, error, ctx):
            ...

        @hooks.middleware
        def with_session(payload, ctx, next):
            with Session() as session:
                current_session.set(session)
                return next()
    """

    def _add(self, name: str, fn: Any) -> Any:
        if not callable(fn):
            raise TypeError(f"hooks.{name}: expected a function, got {fn!r}")
        getattr(_GLOBAL, name).append(fn)
        return fn

    def init(self, fn: Hook) -> Hook:
        return self._add("init", fn)  # type: ignore[no-any-return]

    def cleanup(self, fn: Hook) -> Hook:
        return self._add("cleanup", fn)  # type: ignore[no-any-return]

    def on_start(self, fn: Hook) -> Hook:
        return self._add("on_start", fn)  # type: ignore[no-any-return]

    def on_success(self, fn: Hook) -> Hook:
        return self._add("on_success", fn)  # type: ignore[no-any-return]

    def on_failure(self, fn: Hook) -> Hook:
        return self._add("on_failure", fn)  # type: ignore[no-any-return]

    def on_complete(self, fn: Hook) -> Hook:
        return self._add("on_complete", fn)  # type: ignore[no-any-return]

    def on_wait(self, fn: Hook) -> Hook:
        return self._add("on_wait", fn)  # type: ignore[no-any-return]

    def on_resume(self, fn: Hook) -> Hook:
        return self._add("on_resume", fn)  # type: ignore[no-any-return]

    def middleware(self, fn: Middleware) -> Middleware:
        return self._add("middleware", fn)  # type: ignore[no-any-return]

    def clear(self) -> None:
        """Forget every global hook (tests)."""
        global _GLOBAL
        _GLOBAL = Hooks()


hooks = GlobalHooks()
