"""Where ``@task`` puts the tasks it declares.

A registry is a plain object: the worker loads a project's task modules into a
fresh one, tests make their own and throw them away.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from triggerfish.errors import InvalidTaskOptions, TaskNotFound

if TYPE_CHECKING:
    from triggerfish.sdk._task import Task


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}

    def add(self, task: Task[Any, Any]) -> None:
        existing = self._tasks.get(task.id)
        if existing is not None and existing.qualname != task.qualname:
            raise InvalidTaskOptions(
                f"task id {task.id!r} is declared twice: by {existing.qualname} "
                f"and by {task.qualname}; task ids must be unique"
            )
        self._tasks[task.id] = task

    def get(self, task_id: str) -> Task[Any, Any]:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise TaskNotFound(task_id, list(self._tasks)) from None

    def ids(self) -> list[str]:
        return sorted(self._tasks)

    def __iter__(self) -> Iterator[Task[Any, Any]]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)


default_registry = TaskRegistry()
_current: ContextVar[TaskRegistry] = ContextVar("triggerfish_registry", default=default_registry)


def current_registry() -> TaskRegistry:
    return _current.get()


@contextlib.contextmanager
def collecting_into(registry: TaskRegistry) -> Iterator[TaskRegistry]:
    """Route ``@task`` declarations made inside the block into ``registry``."""
    token = _current.set(registry)
    try:
        yield registry
    finally:
        _current.reset(token)
