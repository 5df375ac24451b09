"""Metadata operations on a JSON document, shared by the server (which stores the
result) and the task process (which keeps a local copy). No server code here."""

from __future__ import annotations

import copy
import math
from typing import Any

from triggerfish.errors import UserError

_KINDS = ("set", "delete", "append", "remove", "increment", "update")


def apply_operations(
    doc: dict[str, Any] | None, operations: list[dict[str, Any]]
) -> dict[str, Any]:
    """The document after ``operations``, in order; raises ``UserError`` naming a bad one.

    Example::

        apply_operations({"n": 1}, [{"type": "increment", "key": "n", "value": 2}])
        # {"n": 3}
    """
    out = copy.deepcopy(doc) if doc else {}
    for i, op in enumerate(operations):
        where = f"operations[{i}]"
        if not isinstance(op, dict) or op.get("type") not in _KINDS:
            raise UserError(f"{where}.type: expected one of {', '.join(_KINDS)}")
        kind = op["type"]
        if kind == "update":
            if not isinstance(op.get("value"), dict):
                raise UserError(f"{where}.value: update takes an object")
            out.update(op["value"])
            continue
        key = op.get("key")
        if not isinstance(key, str) or not key:
            raise UserError(f"{where}.key: a non-empty string is required")
        value = op.get("value")
        if kind == "set":
            out[key] = value
        elif kind == "delete":
            out.pop(key, None)
        elif kind == "append":
            current = out.get(key)
            if current is None:
                current = []
            elif not isinstance(current, list):
                current = [current]
            out[key] = [*current, value]
        elif kind == "remove":
            current = out.get(key)
            if isinstance(current, list):
                out[key] = [v for v in current if v != value]
        elif kind == "increment":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{where}.value: increment takes a number")
            current = out.get(key, 0)
            if isinstance(current, bool) or not isinstance(current, int | float):
                raise UserError(f"{where}: {key!r} holds a {type(current).__name__}, not a number")
            total = current + value
            if isinstance(total, float) and not math.isfinite(total):
                raise UserError(f"{where}.value: {key!r} would overflow a 64-bit float")
            if isinstance(total, int) and not -(2**63) <= total < 2**63:
                raise UserError(f"{where}.value: {key!r} would not fit in 64 bits")
            out[key] = total
    return out
