"""``events`` and ``kv``: send events and keep small durable state, in or out of tasks.

Inside a task the calls go through the worker (task processes hold no API
key); elsewhere through the default client (``TRIGGERFISH_API_URL`` /
``TRIGGERFISH_SECRET_KEY``). Neither is journaled: a ``kv.get`` whose value
steers the task's control flow belongs inside ``step.run``.
"""

from __future__ import annotations

from typing import Any

from triggerfish._durations import parse_duration
from triggerfish.sdk._durable import _current


class EventsApi:
    """The ``events`` namespace."""

    def send(self, name: str, payload: Any = None, *, id: str | None = None) -> dict[str, Any]:
        """Send an event: starts every ``@task(on_event=name)`` and wakes matching waits.

        ``id`` makes the send idempotent (a repeat starts nothing). Returns
        ``{"id", "runs": [run ids], "waitsResolved": n, "isCached": bool}``;
        a payload a subscriber's model rejects raises ``ApiError`` 422 naming
        the task and field (the event is recorded with the error).

        Example::

            from triggerfish import events
            events.send("user.created", {"user_id": "u1"}, id="user-u1-created")
        """
        run = _current.get()
        body = {"name": name, "payload": payload, "id": id}
        if run is not None:
            return run.call("send_event", body)
        from triggerfish.sdk._client import default_client

        return default_client().events.send(name, payload, id=id)


class KeyValue:
    """The ``kv`` namespace: a durable key-value store per environment.

    Example::

        from triggerfish import kv
        kv.set("last-sync", {"at": "2030-01-01"}, ttl="7d")
        kv.get("last-sync")          # -> {"at": "2030-01-01"}, or None once expired
        kv.delete("last-sync")
    """

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` (also once its TTL passed)."""
        answer = self._call("kv_get", {"key": key}, lambda c: c.kv.get_entry(key))
        return answer["value"] if answer.get("found") else default

    def set(self, key: str, value: Any, *, ttl: str | float | None = None) -> None:
        """Store JSON ``value`` under ``key``; ``ttl`` (``"1h"``, seconds) expires it."""
        seconds = parse_duration(ttl) if ttl is not None else None
        self._call(
            "kv_set",
            {"key": key, "value": value, "ttl": seconds},
            lambda c: c.kv.set(key, value, ttl=seconds),
        )

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        answer = self._call("kv_delete", {"key": key}, lambda c: c.kv.delete(key))
        return bool(answer.get("deleted"))

    @staticmethod
    def _call(op: str, body: dict[str, Any], outside: Any) -> dict[str, Any]:
        run = _current.get()
        if run is not None:
            return run.call(op, body)
        from triggerfish.sdk._client import default_client

        return dict(outside(default_client()) or {})


#: ``events.send(name, payload, id=...)``
events = EventsApi()
#: ``kv.get/set/delete``: durable state shared across runs of an environment
kv = KeyValue()
