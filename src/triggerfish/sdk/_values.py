"""Turning task results and exceptions into JSON for reports and the journal."""

from __future__ import annotations

import json
import traceback
from typing import Any

import pydantic


class OutputNotSerializable(TypeError):
    pass


#: values that come out of a JSON round trip unchanged (exact types: not
#: subclasses such as enums, nor floats, which may be NaN)
_AS_IS = frozenset({type(None), bool, int, str})


def describe_error(exc: BaseException, kind: str) -> dict[str, Any]:
    return {
        "name": type(exc).__name__,
        "message": str(exc),
        "stack_trace": "".join(traceback.format_exception(exc)),
        "kind": kind,
    }


def to_json_value(value: Any, what: str) -> Any:
    """``value`` as plain JSON data; pydantic models are dumped."""
    if type(value) in _AS_IS:
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise OutputNotSerializable(
            f"{what} returned a {type(value).__name__}, which is not "
            f"JSON-serialisable ({exc}); return JSON data or a pydantic model"
        ) from None
