"""The ``ctx`` a task receives: which run, which attempt, where it runs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AttemptInfo:
    id: str
    #: 1 for the first try, 2 for the first retry, ...
    number: int


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
    def run_id(self) -> str:
        return self.run.id

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def tags(self) -> list[str]:
        return self.run.tags
