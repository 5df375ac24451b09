"""Turning task results and exceptions into JSON for reports and the journal."""

from __future__ import annotations

import json
import traceback
from typing import Any

import pydantic


class OutputNotSerializable(TypeError):
    pass


def describe_error(exc: BaseException, kind: str) -> dict[str, Any]:
    return {
        "name": type(exc).__name__,
        "message": str(exc),
        "stack_trace": "".join(traceback.format_exception(exc)),
        "kind": kind,
    }


def to_json_value(value: Any, what: str) -> Any:
    """``value`` as plain JSON data; pydantic models are dumped."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise OutputNotSerializable(
            f"{what} returned a {type(value).__name__}, which is not "
            f"JSON-serialisable ({exc}); return JSON data or a pydantic model"
        ) from None
