"""``step``: run a piece of work once per run, whatever happens to the process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from triggerfish._domain.retry import RetryPolicy
from triggerfish.sdk._durable import current, run_step_async, run_step_sync, step_display


class Steps:
    """The ``step`` namespace. Use the module-level ``step`` object."""

    def run(
        self,
        key: str,
        fn: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        icon: str | None = None,
        properties: dict[str, Any] | None = None,
        retry: RetryPolicy | None = None,
    ) -> Any:
        """Call ``fn(*args)`` once and record its result in the run's journal.

        ``key`` names the step in the journal: a replay finds the step by its
        position and key. ``name``, ``icon`` and ``properties`` (JSON data) are
        what the run's trace and ``runs show`` display for it (``name``
        defaults to the key). Inside ``fn``, ``ctx.step.attempt`` is the step's
        try number (``ctx.attempt.number`` stays the run's attempt). Every
        failed try (its error, time and number) stays in the step's history,
        also after it succeeds.

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
                url = await step.run("upload", upload, html,
                                     name="Upload page", icon="s3", properties={"bucket": "b"})
                return {"url": url}
        """
        if not key or not isinstance(key, str):
            raise ValueError("step.run needs a non-empty key")
        display = step_display(name, icon, properties)
        if current("step.run").is_async:
            return run_step_async(key, fn, args, retry, display)
        return run_step_sync(key, fn, args, retry, display)


#: ``step.run(key, fn, *args)``: durable, exactly-once-recorded work inside a task
step = Steps()
