"""The ``ctx`` a task receives: which run, which attempt, where it runs."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AttemptInfo:
    id: str
    #: 1 for the first try, 2 for the first retry, ...
    number: int


@dataclass(frozen=True)
class StepInfo:
    """The ``step.run`` call running now (``ctx.step`` inside its function)."""

    #: the step's key in the journal (``step.run``'s first argument)
    key: str
    #: 1 for the step's first try, 2 for its first retry, ... (counted across run
    #: attempts: a try that failed before a crash still counts)
    attempt: int
    #: the display name given to ``step.run(..., name=)``, else the key
    name: str
    icon: str | None = None
    properties: dict[str, Any] | None = None


#: the step whose function is running in this context, if any
current_step: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "triggerfish_step", default=None
)


@dataclass(frozen=True)
class RunInfo:
    id: str
    tags: list[str] = field(default_factory=list)
    is_test: bool = False


@dataclass(frozen=True)
class TaskInfo:
    id: str


@dataclass(frozen=True)
class EnvironmentInfo:
    id: str
    slug: str


@dataclass(frozen=True)
class MachineInfo:
    name: str
    memory_mb: int


@dataclass(frozen=True)
class Context:
    """Passed as the second argument of a task that declares one.

    Example::

        @task(id="report")
        def report(payload: dict, ctx: Context) -> None:
            print(ctx.run.id, ctx.attempt.number, ctx.environment.slug)
    """

    run: RunInfo
    task: TaskInfo
    attempt: AttemptInfo
    environment: EnvironmentInfo
    machine: MachineInfo

    @property
    def step(self) -> StepInfo:
        """The step running now: ``ctx.step.attempt`` is its try number
        (``ctx.attempt.number`` stays the run's attempt).

        Only inside a ``step.run`` function; elsewhere it raises ``RuntimeError``.

        Example::

            def flaky(ctx: Context) -> str:
                if ctx.step.attempt == 1:
                    raise RuntimeError("first try fails")
                return "ok"

            step.run("process-incoming-data", flaky, ctx)
        """
        info = current_step.get()
        if info is None:
            raise RuntimeError("ctx.step is only available inside a step.run function")
        return info

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def tags(self) -> list[str]:
        return self.run.tags
