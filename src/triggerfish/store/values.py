"""Records and new values as the column values of an insert."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


def column_values(value: DataclassInstance) -> dict[str, Any]:
    """``value``'s fields by name: a record's (or a new value's) columns.

    Not ``dataclasses.asdict``, which deep-copies every JSON value on the way.
    """
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
