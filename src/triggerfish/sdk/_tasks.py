"""``client.tasks`` and ``client.batches``: trigger by task id, one run or a batch."""

from __future__ import annotations

from typing import Any, Unpack
from urllib.parse import quote

from triggerfish.sdk._calls import Call, Namespace, Subscription, faces, subscription_faces
from triggerfish.sdk._models import Batch, BatchHandle, RealtimeEvent, TaskInfo
from triggerfish.sdk._options import TriggerOptions, wire_options
from triggerfish.sdk._runs import _realtime_event
from triggerfish.sdk._task import RunHandle


def _trigger(
    task_id: str, payload: Any = None, **options: Unpack[TriggerOptions]
) -> Call[RunHandle]:
    """Queue a run of the task ``task_id``; its handle at once.

    Example: ``triggerfish.tasks.trigger("hello-world", {"who": "Ada"}, tags=["demo"])``.
    """
    body = {"payload": payload, "options": wire_options(dict(options))}
    return Call(
        "POST",
        f"/api/v1/tasks/{quote(task_id, safe='')}/trigger",
        _run_handle,
        json=body,
        over_socket=("trigger", {"task": task_id, **body}),
        traced=f"trigger {task_id}",
        deduplicated=True,
    )


def _list() -> Call[list[TaskInfo]]:
    """The tasks workers registered in this environment (file, queue, retry, versions).

    Example: ``[t.id for t in client.tasks.list()]``.
    """
    return Call("GET", "/api/v1/tasks", lambda b: [TaskInfo.model_validate(t) for t in b["data"]])


def _run_handle(answer: dict[str, Any]) -> RunHandle:
    return RunHandle(id=answer["id"], is_cached=bool(answer.get("isCached")))


def _batch_trigger(items: list[dict[str, Any]]) -> Call[BatchHandle]:
    """Trigger up to 1,000 runs in one call (one transaction on the server).

    Each item is ``{"task": id, "payload": ..., "options": {...}}``.

    Example::

        batch = triggerfish.tasks.batch_trigger(
            [{"task": "send-email", "payload": {"to": a}} for a in addresses]
        )
        print(batch.id, len(batch.run_ids))

    An item that cannot become a run (unknown task, invalid payload) is left
    out of ``run_ids`` and listed in ``errors``; the others are triggered.
    """
    wire = []
    for i, item in enumerate(items):
        if "task" not in item:
            raise TypeError(f"items[{i}]: each item needs a 'task' (and 'payload', 'options')")
        wire.append(
            {
                "task": item["task"],
                "payload": item.get("payload"),
                "options": wire_options(dict(item.get("options") or {})),
            }
        )
    return Call(
        "POST",
        "/api/v2/tasks/batch",
        lambda b: BatchHandle(
            id=b["id"], run_ids=list(b.get("runs") or []), errors=b.get("errors") or []
        ),
        json={"items": wire},
        deduplicated=True,
    )


class Tasks(Namespace):
    """``client.tasks``: trigger by task id, without importing the task's code."""

    trigger, trigger_async = faces(_trigger)
    batch_trigger, batch_trigger_async = faces(_batch_trigger)
    list, list_async = faces(_list)


def _retrieve_batch(batch_id: str) -> Call[Batch]:
    """A batch and how far its runs got: ``client.batches.retrieve("batch_…")``."""
    return Call("GET", f"/api/v2/batches/{batch_id}", Batch.model_validate)


def _subscribe_batch(batch_id: str) -> Subscription[RealtimeEvent]:
    """The changes of a batch's runs as they happen (a ``snapshot`` of each run
    first), ending once every run is final."""
    return Subscription(f"/api/v1/realtime/batches/{batch_id}", _realtime_event)


class Batches(Namespace):
    """``client.batches``: read a batch (``client.tasks.batch_trigger`` creates one)."""

    retrieve, retrieve_async = faces(_retrieve_batch)
    subscribe, subscribe_async = subscription_faces(_subscribe_batch)
