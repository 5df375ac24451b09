"""``logger``: structured log lines that are stored with the run.

Inside a run, lines go to the run's log (with the attempt number and a
timestamp). Outside a run they go to Python's ``logging``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from triggerfish import _otel

LogSink = Callable[[dict[str, Any]], None]

_sink: LogSink | None = None
_fallback = logging.getLogger("triggerfish.task")
#: levels in order; lines below ``_min_level`` are dropped (the project's ``log_level``)
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40}
_min_level = 0


def set_sink(sink: LogSink | None) -> None:
    """Where log records go while a run executes (set by the child runtime)."""
    global _sink
    _sink = sink


def set_level(level: str) -> None:
    """Drop ``logger`` lines below ``level`` (DEBUG, INFO, WARN or ERROR)."""
    global _min_level
    _min_level = _LEVELS[level.upper()]


class Logger:
    """Example::

    logger.info("charged card", amount=42, currency="EUR")

    The message is positional-only, so any field name is allowed
    (``logger.info("got", message=payload["message"])``).
    """

    def debug(self, message: str, /, **fields: Any) -> None:
        self._log("DEBUG", message, fields)

    def info(self, message: str, /, **fields: Any) -> None:
        self._log("INFO", message, fields)

    def log(self, message: str, /, **fields: Any) -> None:
        self._log("INFO", message, fields)

    def warn(self, message: str, /, **fields: Any) -> None:
        self._log("WARN", message, fields)

    warning = warn

    def error(self, message: str, /, **fields: Any) -> None:
        self._log("ERROR", message, fields)

    def _log(self, level: str, message: str, fields: dict[str, Any]) -> None:
        if _LEVELS[level] < _min_level:
            return
        safe_fields = json.loads(json.dumps(fields, default=repr)) if fields else {}
        ids = _otel.current_ids() if _otel.configured() else None
        if ids is not None:  # the line joins its span in the trace's backend
            safe_fields["trace_id"], safe_fields["span_id"] = ids
        if _sink is not None:
            _sink(
                {
                    "ts": time.time(),
                    "level": level,
                    "message": str(message),
                    "fields": safe_fields,
                    "stream": "logger",
                }
            )
            return
        _fallback.log(
            logging.getLevelName(level if level != "WARN" else "WARNING"),
            "%s %s",
            message,
            safe_fields or "",
        )


logger = Logger()
