"""``events``: send events, in or out of tasks.

Inside a task the call goes through the worker; elsewhere through the default
client (``TRIGGERFISH_API_URL`` / ``TRIGGERFISH_SECRET_KEY``), or ``client.events``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from triggerfish.sdk._calls import Call, DefaultNamespace, Namespace, declared_face, faces
from triggerfish.sdk._kv import KeyValue, kv

if TYPE_CHECKING:
    from triggerfish.sdk._client import Triggerfish

__all__ = ["Events", "EventsApi", "KeyValue", "events", "kv"]


def _send(name: str, payload: Any = None, *, id: str | None = None) -> Call[dict[str, Any]]:
    """Send an event: starts every ``@task(on_event=name)`` and wakes matching waits.

    ``id`` makes the send idempotent per event name (a repeat of the same name
    and id starts nothing and answers as the first send did, a rejection
    included), and addresses the waits of ``wait.for_event(name, id=...)``.
    Returns ``{"id", "runs": [run ids], "waitsResolved": n, "isCached": bool}``;
    a payload a subscriber's model (or a validated wait addressed by ``id``)
    rejects raises ``ApiError`` 422 naming the field (the event is recorded
    with the error).

    Example::

        from triggerfish import events
        events.send("user.created", {"user_id": "u1"}, id="user-u1-created")
        events.send("content.approved", {"approved": True}, id="content-approval-d1")
    """
    body = {"name": name, "payload": payload, **({"id": id} if id else {})}
    worker_body = {"name": name, "payload": payload, "id": id}
    return Call("POST", "/api/v1/events", dict, json=body, in_task=("send_event", worker_body))


class Events(Namespace):
    """``client.events``: send events (starts subscribed tasks, wakes event waits)."""

    send, send_async = faces(_send)


class EventsApi(DefaultNamespace):
    """The ``events`` namespace: ``events.send(...)``, ``await events.send_async(...)``.

    Both take ``client=`` to use another :class:`~triggerfish.Triggerfish` than the
    default one (outside a task); their signatures are declared for type checkers
    and checked against ``_send`` on import.
    """

    @staticmethod
    @declared_face(_send)
    def send(
        name: str, payload: Any = None, *, id: str | None = None, client: Triggerfish | None = None
    ) -> dict[str, Any]:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_send, is_async=True)
    async def send_async(
        name: str, payload: Any = None, *, id: str | None = None, client: Triggerfish | None = None
    ) -> dict[str, Any]:
        raise NotImplementedError  # replaced by the face


#: ``events.send(name, payload, id=...)``
events = EventsApi()
