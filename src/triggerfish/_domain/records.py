"""What the engine hands the layers above it about stored things.

Until typed records (frozen dataclasses per table) replace it, a stored row
reaches the API as a :class:`StoredRow`: each column an attribute. The name
keeps the API free of the database library that produced the row.
"""

from __future__ import annotations

from typing import Any, Protocol


class StoredRow(Protocol):
    """A row the store read; ``row.id``, ``row.status``, … are its columns."""

    def __getattr__(self, name: str, /) -> Any: ...
