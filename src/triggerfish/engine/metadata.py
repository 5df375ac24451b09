"""Run metadata: one JSON object per run, changed by operations from inside the
task (batched by the worker) or from outside over the API.

Operations (Trigger.dev's names)::

    {"type": "set", "key": "progress", "value": 0.5}
    {"type": "delete", "key": "progress"}
    {"type": "append", "key": "steps", "value": "render"}     # list; made if missing
    {"type": "remove", "key": "steps", "value": "render"}     # every equal element
    {"type": "increment", "key": "tokens", "value": 120}      # number; 0 if missing
    {"type": "update", "value": {"a": 1, "b": 2}}             # shallow merge
"""

from __future__ import annotations

import json
from typing import Any

from triggerfish._domain.states import ATTEMPT_ENDED, RunStatus, is_final
from triggerfish._domain.times import to_datetime
from triggerfish._metadata_ops import apply_operations
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import RunNotFound, StaleTransition, UserError
from triggerfish.store import runs as run_store

#: the largest metadata document a run may carry, as compact JSON
MAX_METADATA_BYTES = 256 * 1024

__all__ = ["MAX_METADATA_BYTES", "Metadata", "apply_operations", "check_size"]


def check_size(doc: dict[str, Any]) -> None:
    size = len(json.dumps(doc, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise UserError(
            f"metadata: {size} bytes is above the limit of {MAX_METADATA_BYTES}; keep large "
            "data elsewhere and store a reference"
        )


class Metadata:
    def __init__(self, res: EngineResources) -> None:
        self.res = res

    async def get(self, env_id: str, run_id: str) -> dict[str, Any]:
        async with self.res.db.read() as conn:
            row = await run_store.get(conn, env_id, run_id)
        if row is None:
            raise RunNotFound(run_id)
        return dict(row.run_metadata or {})

    async def update(
        self,
        env_id: str,
        run_id: str,
        *,
        replace: dict[str, Any] | None = None,
        operations: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Replace the document and/or apply operations; returns the new document."""
        async with self.res.db.write() as conn:
            row = await run_store.get_for_update(conn, run_id)
            if row is None or row.environment_id != env_id:
                raise RunNotFound(run_id)
            doc = replace if replace is not None else (row.run_metadata or {})
            doc = apply_operations(doc, operations or [])
            check_size(doc)
            await run_store.transition_values(
                conn, run_id, run_metadata=doc, updated_at=to_datetime(self.res.clock.now())
            )
        return doc

    async def update_from_attempt(
        self, env_id: str, attempt_id: str, operations: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """Operations sent by a running attempt (via its worker).

        Only the run's current attempt may write, and not once it has ended: an
        attempt whose lease ran out (its worker cut off, still running) must not
        write over the metadata of the attempt that replaced it.
        """
        async with self.res.db.read() as conn:
            attempt = await run_store.attempt_by_id(conn, attempt_id)
            run = await run_store.get_by_id(conn, attempt.run_id) if attempt else None
        if (
            attempt is None
            or attempt.status in ATTEMPT_ENDED
            or run is None
            or run.current_attempt_id != attempt_id
            or is_final(RunStatus(run.status))
        ):
            raise StaleTransition(attempt.run_id if attempt else "?", "metadata", attempt_id)
        return await self.update(env_id, attempt.run_id, operations=operations)
