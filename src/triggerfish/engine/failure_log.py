"""Logging a background loop's failures without a line per pass.

A loop that runs twice a second and fails on every pass while the database is
away would log twice a second for the whole outage. Instead: the first failure
at once (with its traceback, unless the store was simply unreachable), then
at most one line per ``every`` seconds that counts the failures not logged
since, and one line when a pass succeeds again::

    alert evaluation failed (StoreUnavailable: ...); trying again
    alert evaluation still failing: 59 more failure(s) in the last 60 s (StoreUnavailable: ...)
    alert evaluation works again after 75 s and 150 failure(s)

Example::

    failures = FailureLog(logging.getLogger("x"), "alert evaluation", every=60.0)
    failures.failed(now=100.0, exc=StoreUnavailable("refused"))  # logged
    failures.failed(now=100.5, exc=StoreUnavailable("refused"))  # counted
    failures.succeeded(now=101.0)  # logged: works again
"""

from __future__ import annotations

import logging

from triggerfish.errors import StoreUnavailable

#: seconds between two lines about the same run of failures
EVERY = 60.0


class FailureLog:
    """The failures of one loop, logged sparingly (see the module doc)."""

    def __init__(self, logger: logging.Logger, what: str, every: float = EVERY) -> None:
        self._log = logger
        self._what = what
        self._every = every
        #: when the current run of failures began (None while the loop succeeds)
        self._since: float | None = None
        self._failures = 0  # in the current run of failures
        self._last_line = 0.0  # when the last line about it was logged
        self._unlogged = 0  # failures since that line

    def failed(self, now: float, exc: BaseException, where: str = "") -> None:
        """A pass failed with ``exc`` (``where``: what it failed on, for the line)."""
        why = f"{type(exc).__name__}: {exc}" + (f"; {where}" if where else "")
        self._failures += 1
        if self._since is None:
            self._since = self._last_line = now
            # a store that cannot be reached needs no traceback; anything else does
            self._log.error(
                "%s failed (%s); trying again",
                self._what,
                why,
                exc_info=None if isinstance(exc, StoreUnavailable) else exc,
            )
            return
        self._unlogged += 1
        if now - self._last_line >= self._every:
            self._log.error(
                "%s still failing: %d more failure(s) in the last %.0f s (%s)",
                self._what,
                self._unlogged,
                now - self._last_line,
                why,
            )
            self._last_line, self._unlogged = now, 0

    def succeeded(self, now: float) -> None:
        if self._since is None:
            return
        self._log.warning(
            "%s works again after %.0f s and %d failure(s)",
            self._what,
            now - self._since,
            self._failures,
        )
        self._since, self._failures, self._unlogged = None, 0, 0
