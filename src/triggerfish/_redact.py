"""Blanking API keys out of text that gets stored (log lines), whoever printed them.

Its own small module so the worker can use it without loading the engine.

Example::

    redact("key is tr_dev_abcdefghijklmnopqrstuvwx")  # -> "key is [redacted]"
"""

from __future__ import annotations

import re

_SECRET_KEY = re.compile(r"tr_(?:dev|staging|prod|preview)_[A-Za-z0-9_]{16,}")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with anything shaped like a Triggerfish API key replaced by ``[redacted]``."""
    return _SECRET_KEY.sub(REDACTED, text)
