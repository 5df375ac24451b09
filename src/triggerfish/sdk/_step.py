"""``step``: run a piece of work once per run, whatever happens to the process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from triggerfish._domain.retry import RetryPolicy
from triggerfish.sdk._durable import current, run_step_async, run_step_sync


class Steps:
    """The ``step`` namespace. Use the module-level ``step`` object."""

    def run(
        self, name: str, fn: Callable[..., Any], *args: Any, retry: RetryPolicy | None = None
    ) -> Any:
        """Call ``fn(*args)`` once and record its result in the run's journal.

        When the run is replayed (after a crash, a retry or a durable wait) the
        recorded result is returned without calling ``fn`` again. A failing
        ``fn`` is retried per ``retry`` (default: the task's policy); when the
        tries are used up, :class:`~triggerfish.StepFailedError` is raised, and
        replays raise it again rather than re-running the step. The result must
        be JSON data (or a pydantic model, returned dumped).

        In ``async def`` tasks the call is awaited; ``fn`` may be sync or async.

        Example::

            from triggerfish import step, task

            @task(id="publish")
            async def publish(payload: dict) -> dict:
                html = await step.run("render", render_page, payload["page"])
                url = await step.run("upload", upload, html)
                return {"url": url}
        """
        if not name:
            raise ValueError("step.run needs a non-empty name")
        if current("step.run").is_async:
            return run_step_async(name, fn, args, retry)
        return run_step_sync(name, fn, args, retry)


#: ``step.run(name, fn, *args)``: durable, exactly-once-recorded work inside a task
step = Steps()
