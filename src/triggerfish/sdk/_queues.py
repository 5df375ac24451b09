"""``client.queues`` and ``client.environment``: queues, their limits, the environment's cap."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from triggerfish.sdk._calls import Call, Namespace, faces
from triggerfish.sdk._models import QueueInfo


def _queue_path(queue: Any, suffix: str = "") -> str:
    name = getattr(queue, "name", queue)
    if not isinstance(name, str) or not name:
        raise TypeError("queue: pass a queue name, a queue id or a Queue object")
    return f"/api/v1/queues/{quote(name, safe='')}{suffix}"


def _queue_change(queue: Any, suffix: str, body: dict[str, Any] | None) -> Call[QueueInfo]:
    return Call("POST", _queue_path(queue, suffix), QueueInfo.model_validate, json=body or {})


def _list(page: int = 1, per_page: int = 100) -> Call[list[QueueInfo]]:
    """The environment's queues, ``per_page`` at a time."""
    return Call(
        "GET",
        "/api/v1/queues",
        lambda b: [QueueInfo.model_validate(q) for q in b["data"]],
        params={"page": page, "perPage": per_page},
    )


def _retrieve(queue: Any) -> Call[QueueInfo]:
    """One queue with its limits and how many runs are running and waiting."""
    return Call("GET", _queue_path(queue), QueueInfo.model_validate)


def _pause(queue: Any) -> Call[QueueInfo]:
    """Start no more runs of the queue (it keeps accepting them)."""
    return _queue_change(queue, "/pause", {"action": "pause"})


def _resume(queue: Any) -> Call[QueueInfo]:
    """Start runs of a paused queue again."""
    return _queue_change(queue, "/pause", {"action": "resume"})


def _override_concurrency_limit(queue: Any, limit: int) -> Call[QueueInfo]:
    """Replace the declared limit until ``reset_concurrency_limit``."""
    return _queue_change(queue, "/concurrency/override", {"concurrencyLimit": limit})


def _reset_concurrency_limit(queue: Any) -> Call[QueueInfo]:
    """Go back to the limit the code declares."""
    return _queue_change(queue, "/concurrency/reset", None)


def _set_concurrency_key_limit(queue: Any, limit: int | None) -> Call[QueueInfo]:
    """Slots each concurrency key may hold (``None``: the queue's limit)."""
    return _queue_change(queue, "/concurrency/key-limit", {"concurrencyKeyLimit": limit})


def _set_rate_limit(queue: Any, limit: int | None, period: str | float | None) -> Call[QueueInfo]:
    """At most ``limit`` starts per ``period`` (``"1m"``); ``None, None`` removes it."""
    return _queue_change(queue, "/rate-limit", {"limit": limit, "period": period})


class Queues(Namespace):
    """``client.queues``: inspect queues, pause/resume them and change limits at run time.

    A queue is named by its name (``"emails"``, or ``"task/<task id>"`` for a
    task's own queue), its id (``"queue_…"``) or the :class:`Queue` object.

    Example::

        triggerfish.queues.pause("emails")
        triggerfish.queues.override_concurrency_limit("emails", 10)
        print(triggerfish.queues.retrieve("emails").running)
    """

    list, list_async = faces(_list)
    retrieve, retrieve_async = faces(_retrieve)
    pause, pause_async = faces(_pause)
    resume, resume_async = faces(_resume)
    override_concurrency_limit, override_concurrency_limit_async = faces(
        _override_concurrency_limit
    )
    reset_concurrency_limit, reset_concurrency_limit_async = faces(_reset_concurrency_limit)
    set_concurrency_key_limit, set_concurrency_key_limit_async = faces(_set_concurrency_key_limit)
    set_rate_limit, set_rate_limit_async = faces(_set_rate_limit)


def _concurrency() -> Call[dict[str, Any]]:
    """``{"concurrencyLimit": int | None, "running": int}``."""
    return Call("GET", "/api/v1/environment/concurrency", dict)


def _set_concurrency_limit(limit: int | None) -> Call[dict[str, Any]]:
    """Cap runs holding a slot across every queue (``None``: no cap)."""
    body = {"concurrencyLimit": limit}
    return Call("PUT", "/api/v1/environment/concurrency", dict, json=body)


def _reset_environment_limit() -> Call[dict[str, Any]]:
    """Drop the limit set at run time: the project configuration's default
    (``environment_concurrency``) applies again, or no limit."""
    return Call("DELETE", "/api/v1/environment/concurrency", dict)


def _doctor() -> Call[dict[str, Any]]:
    """Queues, limits, workers online and the oldest queued run with its reason."""
    return Call("GET", "/api/v1/doctor", dict)


def _whoami() -> Call[dict[str, Any]]:
    """The key's project and environment:
    ``{"project": {"ref"}, "environment": {"id", "slug"}}``."""
    return Call("GET", "/api/v2/whoami", dict)


class Environment(Namespace):
    """``client.environment``: the environment-wide concurrency limit, ``doctor``, ``whoami``."""

    concurrency, concurrency_async = faces(_concurrency)
    set_concurrency_limit, set_concurrency_limit_async = faces(_set_concurrency_limit)
    reset_concurrency_limit, reset_concurrency_limit_async = faces(_reset_environment_limit)
    doctor, doctor_async = faces(_doctor)
    whoami, whoami_async = faces(_whoami)
