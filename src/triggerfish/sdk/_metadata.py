"""``metadata``: a JSON document per run that the task updates as it goes.

Inside a run every call changes a local copy at once (so ``metadata.current()``
sees it) and queues the operation; the worker sends queued operations to the
server in batches, fire-and-forget, and before it reports the attempt's end.
Outside a run, use the API (``client.runs.update_metadata``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

OperationSink = Callable[[dict[str, Any]], None]

_sink: OperationSink | None = None
_doc: dict[str, Any] = {}


def bind(sink: OperationSink | None, initial: dict[str, Any] | None = None) -> None:
    """Where operations go while a run executes (set by the child runtime)."""
    global _sink, _doc
    _sink = sink
    _doc = copy.deepcopy(initial) if initial else {}


class Metadata:
    """Example::

    from triggerfish import metadata, task

    @task(id="render")
    def render(payload: dict) -> None:
        metadata.set("progress", 0.1)
        metadata.append("steps", "layout")
        metadata.increment("tokens", 812)
    """

    def _apply(self, op: dict[str, Any]) -> None:
        from triggerfish._metadata_ops import apply_operations

        global _doc
        if _sink is None:
            raise RuntimeError(
                "metadata.* works inside a running task; from outside use "
                "client.runs.update_metadata(run_id, ...)"
            )
        _doc = apply_operations(_doc, [op])
        _sink(op)

    def set(self, key: str, value: Any) -> None:
        self._apply({"type": "set", "key": key, "value": value})

    def delete(self, key: str) -> None:
        self._apply({"type": "delete", "key": key})

    def append(self, key: str, value: Any) -> None:
        """Add ``value`` to the list at ``key`` (made if missing)."""
        self._apply({"type": "append", "key": key, "value": value})

    def remove(self, key: str, value: Any) -> None:
        """Remove every element equal to ``value`` from the list at ``key``."""
        self._apply({"type": "remove", "key": key, "value": value})

    def increment(self, key: str, value: float = 1) -> None:
        self._apply({"type": "increment", "key": key, "value": value})

    def decrement(self, key: str, value: float = 1) -> None:
        self._apply({"type": "increment", "key": key, "value": -value})

    def update(self, values: dict[str, Any]) -> None:
        """Set several top-level keys at once."""
        self._apply({"type": "update", "value": dict(values)})

    def stream(self, key: str, source: Any) -> Any:
        """``streams.pipe`` under Trigger.dev's name: send ``source``'s chunks to the
        run's stream ``key`` as they come (see ``triggerfish.streams``)."""
        from triggerfish.sdk._streams import streams

        return streams.pipe(key, source)

    def current(self) -> dict[str, Any]:
        """The run's metadata as this attempt sees it (a copy)."""
        return copy.deepcopy(_doc)

    def get(self, key: str, default: Any = None) -> Any:
        return copy.deepcopy(_doc.get(key, default))


metadata = Metadata()
