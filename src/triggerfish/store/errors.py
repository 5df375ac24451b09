"""Errors the store raises in place of its drivers' own.

The layers above the store catch these, never a database library's types:
:class:`DuplicateKey` for a lost race on a unique key (the caller finds the
winner's row), and :class:`NotLastStatement` for a misuse of
``fetch_on_driver`` (a bug, so it is not a ``TriggerfishError``).
"""

from __future__ import annotations


class DuplicateKey(Exception):
    """A write broke a unique key: another transaction stored that key first.

    The callers that expect it (concurrent triggers with one idempotency key,
    workers registering the same task versions) read the row that won.
    """


class NotLastStatement(RuntimeError):
    """A statement ran after a ``fetch_on_driver`` statement that PostgreSQL had
    already committed on its own (it was its transaction's first statement)."""

    def __init__(self, committed: str, after: str) -> None:
        super().__init__(
            f"{_short(after)!r} ran in a transaction whose first statement, "
            f"{_short(committed)!r}, went through fetch_on_driver and so was "
            "committed on its own: it must be the transaction's last statement. "
            "Run it last, or after another statement of the transaction."
        )


def _short(sql: str) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= 80 else flat[:77] + "..."
