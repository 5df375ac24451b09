"""``kv``: the environment's durable key-value store, in or out of tasks.

Inside a task the calls go through the worker; elsewhere through the default
client (``TRIGGERFISH_API_URL`` / ``TRIGGERFISH_SECRET_KEY``), or ``client.kv``.
Reads are not journaled: a ``kv.get`` whose value steers the task's control
flow belongs inside ``step.run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from triggerfish._durations import parse_duration
from triggerfish.sdk._calls import Call, DefaultNamespace, Namespace, declared_face, faces

if TYPE_CHECKING:
    from triggerfish.sdk._client import Triggerfish


def _get_entry(key: str) -> Call[dict[str, Any]]:
    """``{"found": bool, "value": ...}``"""
    return Call("GET", f"/api/v1/kv/{key}", dict, in_task=("kv_get", {"key": key}))


def _get(key: str, default: Any = None) -> Call[Any]:
    """The value stored under ``key``, or ``default`` (also once its TTL passed)."""
    entry = _get_entry(key)
    return Call(
        entry.method,
        entry.path,
        lambda answer: answer["value"] if answer.get("found") else default,
        in_task=entry.in_task,
    )


def _set(key: str, value: Any, *, ttl: str | float | None = None) -> Call[dict[str, Any]]:
    """Store JSON ``value`` under ``key``; ``ttl`` (``"1h"``, seconds) expires it."""
    body = {"value": value, **({"ttl": ttl} if ttl is not None else {})}
    worker_body = {"key": key, "value": value, "ttl": ttl}
    return Call("PUT", f"/api/v1/kv/{key}", dict, json=body, in_task=("kv_set", worker_body))


def _delete(key: str) -> Call[dict[str, Any]]:
    """Remove ``key``: ``{"deleted": bool}``."""
    return Call("DELETE", f"/api/v1/kv/{key}", dict, in_task=("kv_delete", {"key": key}))


def _set_quietly(key: str, value: Any, *, ttl: str | float | None = None) -> Call[None]:
    """Store JSON ``value`` under ``key``; ``ttl`` (``"1h"``, seconds) expires it."""
    # the worker takes seconds only: read the duration here
    stored = _set(key, value, ttl=parse_duration(ttl) if ttl is not None else None)
    return Call(stored.method, stored.path, lambda _: None, stored.json, in_task=stored.in_task)


def _delete_reporting(key: str) -> Call[bool]:
    """Remove ``key``; True if it existed."""
    deleted = _delete(key)
    return Call(
        deleted.method,
        deleted.path,
        lambda answer: bool(answer.get("deleted")),
        in_task=deleted.in_task,
    )


class Kv(Namespace):
    """``client.kv``: the environment's durable key-value store."""

    get_entry, get_entry_async = faces(_get_entry)
    get, get_async = faces(_get)
    set, set_async = faces(_set)
    delete, delete_async = faces(_delete)


class KeyValue(DefaultNamespace):
    """The ``kv`` namespace: a durable key-value store per environment.

    Every call has an ``…_async`` form, for ``async def`` tasks and apps, and
    takes ``client=`` to use another :class:`~triggerfish.Triggerfish` than the
    default one (outside a task). Each face's signature is declared for type
    checkers and checked against its definition on import.

    Example::

        from triggerfish import kv
        kv.set("last-sync", {"at": "2030-01-01"}, ttl="7d")
        kv.get("last-sync")          # -> {"at": "2030-01-01"}, or None once expired
        kv.delete("last-sync")
    """

    @staticmethod
    @declared_face(_get)
    def get(key: str, default: Any = None, *, client: Triggerfish | None = None) -> Any:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_get, is_async=True)
    async def get_async(key: str, default: Any = None, *, client: Triggerfish | None = None) -> Any:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_set_quietly)
    def set(
        key: str,
        value: Any,
        *,
        ttl: str | float | None = None,
        client: Triggerfish | None = None,
    ) -> None:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_set_quietly, is_async=True)
    async def set_async(
        key: str,
        value: Any,
        *,
        ttl: str | float | None = None,
        client: Triggerfish | None = None,
    ) -> None:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_delete_reporting)
    def delete(key: str, *, client: Triggerfish | None = None) -> bool:
        raise NotImplementedError  # replaced by the face

    @staticmethod
    @declared_face(_delete_reporting, is_async=True)
    async def delete_async(key: str, *, client: Triggerfish | None = None) -> bool:
        raise NotImplementedError  # replaced by the face


#: ``kv.get/set/delete``: durable state shared across runs of an environment
kv = KeyValue()
