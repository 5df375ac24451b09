"""``client.runs``: read, list, cancel, replay, reschedule and wait for runs."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from triggerfish.errors import ConnectionLost, RunTimeout, ServerUnreachable
from triggerfish.sdk._calls import Call, Namespace, Subscription, faces, subscription_faces
from triggerfish.sdk._models import LogLine, RealtimeEvent, Run, RunPage, parse_run_page
from triggerfish.sdk._task import RunHandle


def _retrieve(run_id: str) -> Call[Run]:
    """Status, attempts, output, error and timestamps of a run."""
    return Call("GET", f"/api/v3/runs/{run_id}", Run.model_validate)


def _list(
    *,
    status: list[str] | str | None = None,
    task: list[str] | str | None = None,
    tag: list[str] | str | None = None,
    batch: str | None = None,
    schedule: str | None = None,
    queue: list[str] | str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    limit: int = 25,
    after: str | None = None,
    before: str | None = None,
) -> Call[RunPage]:
    """Runs, newest first.

    Filters: ``status``, ``task``, ``tag``, ``batch``, ``schedule``, ``queue``,
    ``created_from``/``created_to``; paging: ``limit``, ``after``, ``before``.
    """

    def csv(value: list[str] | str | None) -> str | None:
        return ",".join(value) if isinstance(value, list) else value

    def ms(value: datetime | None) -> str | None:
        return str(int(value.timestamp() * 1000)) if value else None

    params = {
        "filter[status]": csv(status),
        "filter[taskIdentifier]": csv(task),
        "filter[tag]": csv(tag),
        "filter[batch]": batch,
        "filter[schedule]": schedule,
        "filter[queue]": csv(queue),
        "filter[createdAt][from]": ms(created_from),
        "filter[createdAt][to]": ms(created_to),
        "page[size]": limit,
        "page[after]": after,
        "page[before]": before,
    }
    return Call(
        "GET", "/api/v1/runs", parse_run_page, params={k: v for k, v in params.items() if v}
    )


def _cancel(run_id: str) -> Call[str]:
    """Cancel a run that has not finished; returns its id."""
    return Call("POST", f"/api/v2/runs/{run_id}/cancel", lambda b: str(b["id"]))


def _replay(
    run_id: str, *, from_step: int | None = None, reuse_tokens: bool = False
) -> Call[RunHandle]:
    """Start a new run like ``run_id``; its handle, as a trigger returns.

    With ``from_step=N`` the new run reuses the original's journal before
    step N (1-based): those steps return their recorded results and step N
    onward runs for real. A token the original created before step N and
    that was completed since is created again, pending, so the replay waits
    for a new completion (an old approval is not applied again); with
    ``reuse_tokens=True`` the recorded completions are reused.

    Example::

        handle = client.runs.replay("run_…", from_step=4)
        client.runs.poll(handle.id)
    """
    body: dict[str, Any] = {"fromStep": from_step} if from_step else {}
    if reuse_tokens:
        body["reuseCompletedTokens"] = True
    return Call(
        "POST", f"/api/v1/runs/{run_id}/replay", lambda b: RunHandle(id=str(b["id"])), json=body
    )


def _reschedule(run_id: str, delay: str | float | datetime) -> Call[Run]:
    """Move a DELAYED run: ``delay`` is a duration from now (``"30m"``) or a datetime."""
    value = delay.isoformat() if isinstance(delay, datetime) else delay
    return Call(
        "POST", f"/api/v1/runs/{run_id}/reschedule", Run.model_validate, json={"delay": value}
    )


def _update_metadata(
    run_id: str,
    metadata: dict[str, Any] | None = None,
    *,
    operations: list[dict[str, Any]] | None = None,
) -> Call[dict[str, Any]]:
    """Replace a run's metadata and/or apply operations; returns the new document.

    Example::

        client.runs.update_metadata(run_id, operations=[
            {"type": "increment", "key": "retries", "value": 1}])
    """
    body: dict[str, Any] = {}
    if metadata is not None:
        body["metadata"] = metadata
    if operations:
        body["operations"] = operations
    return Call("PUT", f"/api/v1/runs/{run_id}/metadata", lambda b: dict(b["metadata"]), json=body)


def _metadata(run_id: str) -> Call[dict[str, Any]]:
    """A run's metadata document."""
    return Call("GET", f"/api/v1/runs/{run_id}/metadata", lambda b: dict(b["metadata"]))


def _add_tags(run_id: str, tags: list[str]) -> Call[None]:
    """Add tags to a run (at most 10 in all)."""
    return Call("POST", f"/api/v1/runs/{run_id}/tags", lambda _: None, json={"tags": tags})


def _logs(run_id: str, after: int = 0) -> Call[list[LogLine]]:
    """A run's log lines after the line id ``after``, oldest first."""
    return Call(
        "GET",
        f"/api/v1/runs/{run_id}/logs",
        lambda b: [LogLine.model_validate(x) for x in b["data"]],
        params={"after": after},
    )


def _read_stream(run_id: str, key: str, after: int = -1) -> Call[list[Any]]:
    """The chunks of a run's stream ``key`` stored so far (after number ``after``),
    oldest first; live chunks come with ``subscribe`` as ``stream`` events."""
    return Call(
        "GET",
        f"/api/v1/runs/{run_id}/streams/{key}",
        lambda b: list(b["data"]),
        params={"after": after},
    )


def _realtime_event(event: str, data: Any) -> RealtimeEvent | None:
    if event not in ("snapshot", "change"):
        return None
    return RealtimeEvent.model_validate(data)


def _subscribe(run_id: str) -> Subscription[RealtimeEvent]:
    """A run's changes as they happen, ending once it is final.

    The first event is a ``snapshot`` of the run; then one per change
    (status, metadata, tags, log line, stream chunk, waitpoint). A dropped
    connection is resumed where it stopped.

    Example::

        for event in client.runs.subscribe(handle.id):
            print(event.kind, event.data)
    """
    return Subscription(f"/api/v1/realtime/runs/{run_id}", _realtime_event)


def _subscribe_to_tag(tag: str | list[str]) -> Subscription[RealtimeEvent]:
    """The changes of every run carrying ``tag`` (or any of a list), as they happen;
    it never ends by itself: break out of the loop."""
    tags = ",".join(tag) if isinstance(tag, list) else tag
    return Subscription("/api/v1/realtime/runs", _realtime_event, params={"tags": tags})


class Runs(Namespace):
    """``client.runs``: read, list, cancel and wait for runs."""

    retrieve, retrieve_async = faces(_retrieve)
    list, list_async = faces(_list)
    cancel, cancel_async = faces(_cancel)
    replay, replay_async = faces(_replay)
    reschedule, reschedule_async = faces(_reschedule)
    update_metadata, update_metadata_async = faces(_update_metadata)
    metadata, metadata_async = faces(_metadata)
    add_tags, add_tags_async = faces(_add_tags)
    logs, logs_async = faces(_logs)
    subscribe, subscribe_async = subscription_faces(_subscribe)
    read_stream, read_stream_async = faces(_read_stream)
    subscribe_to_tag, subscribe_to_tag_async = subscription_faces(_subscribe_to_tag)

    # poll is several calls with pauses between, so each face is its own loop
    def poll(self, run_id: str, timeout: float = 60.0, interval: float = 0.25) -> Run:
        """Wait until the run is final and return it; ``RunTimeout`` after ``timeout`` s.

        A server that stops answering (a restart) is asked again until the
        timeout; if it is still unreachable then, that is raised
        (:class:`~triggerfish.errors.ServerUnreachable`) rather than ``RunTimeout``.

        Example::

            run = triggerfish.runs.poll(handle.id, timeout=30)
            print(run.status, run.output)
        """
        deadline = time.monotonic() + timeout
        pause = interval
        while True:
            try:
                run = self.retrieve(run_id)
            except (ServerUnreachable, ConnectionLost):
                if time.monotonic() >= deadline:
                    raise
                pause = min(max(pause, interval) * 2, MAX_RECONNECT_PAUSE)
            else:
                if run.is_completed:
                    return run
                if time.monotonic() >= deadline:
                    raise RunTimeout(run_id, timeout)
                pause = interval
            time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))

    async def poll_async(self, run_id: str, timeout: float = 60.0, interval: float = 0.25) -> Run:
        """``poll`` for async apps: ``await triggerfish.runs.poll_async(handle.id)``."""
        deadline = time.monotonic() + timeout
        pause = interval
        while True:
            try:
                run = await self.retrieve_async(run_id)
            except (ServerUnreachable, ConnectionLost):
                if time.monotonic() >= deadline:
                    raise
                pause = min(max(pause, interval) * 2, MAX_RECONNECT_PAUSE)
            else:
                if run.is_completed:
                    return run
                if time.monotonic() >= deadline:
                    raise RunTimeout(run_id, timeout)
                pause = interval
            await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))


#: the longest pause between two attempts to reach a server that stopped answering
MAX_RECONNECT_PAUSE = 1.0
