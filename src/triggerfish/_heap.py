"""Garbage-collector settings for Triggerfish's long-running processes."""

from __future__ import annotations

import gc

#: allocations between young collections: Python's default (700) makes a busy
#: server collect thousands of times a second, each a pass over fresh objects
_YOUNG_THRESHOLD = 20_000


def settle_after_startup() -> None:
    """Call once a server, worker or task process has imported and set up what it
    keeps for its whole life.

    ``gc.freeze`` moves every object made so far (modules, the app, routes, the
    engine) out of the collector's view: a full collection then walks only what
    was made since, instead of the whole import graph (in a server a pause of
    tens to hundreds of milliseconds, which stalls every request meanwhile).
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_THRESHOLD, middle, old)
