"""``idempotency_keys.create``: scoped idempotency keys, as Trigger.dev makes them.

A key is the SHA-256 hex of its parts joined with ``-``. Inside a running task
the scope adds the current run (``"run"``, the default: the key is unique per
parent run) or the current attempt (``"attempt"``: a retry triggers again);
``"global"`` adds nothing. Outside a task every scope is global.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Scope = Literal["run", "attempt", "global"]


class IdempotencyKeys:
    def create(self, key: str | list[str], scope: Scope = "run") -> str:
        """A key to pass as ``idempotency_key=``.

        Example::

            key = idempotency_keys.create(f"welcome-{user_id}", scope="global")
            send_welcome.trigger({"user": user_id}, idempotency_key=key)
        """
        from triggerfish.sdk._durable import _current

        if scope not in ("run", "attempt", "global"):
            raise ValueError(f"scope: expected run, attempt or global, got {scope!r}")
        parts = [key] if isinstance(key, str) else list(key)
        run = _current.get()
        if run is not None and scope == "run":
            parts.append(run.run_id)
        elif run is not None and scope == "attempt":
            parts += [run.run_id, run.attempt_id]
        return hashlib.sha256("-".join(parts).encode()).hexdigest()


idempotency_keys = IdempotencyKeys()
