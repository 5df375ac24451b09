"""Run streams: what a task pipes (``streams.pipe``), stored with its run and live
on the change feed (kind ``stream``)."""

from __future__ import annotations

import json
from typing import Any

from triggerfish._domain.states import RunStatus, is_final
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import ConflictError, PermissionDenied, RunNotFound, UserError
from triggerfish.store import runs as run_store
from triggerfish.store import streams as stream_store

#: the largest chunk, as JSON, in bytes
MAX_CHUNK_BYTES = 256 * 1024
#: the most chunks one append may carry
MAX_CHUNKS = 1000


def check_key(key: str) -> None:
    if not key or len(key) > 128 or "/" in key:
        raise UserError(f"key: a stream key is 1-128 characters without '/', got {key!r}")


class Streams:
    def __init__(self, res: EngineResources) -> None:
        self.res = res

    async def append(
        self, env_id: str, run_id: str, key: str, first_seq: int, chunks: list[Any]
    ) -> int:
        """Add chunks to a run's stream (numbered from ``first_seq``; a resent
        number is stored once); how many were new. A final run's streams are closed."""
        check_key(key)
        if first_seq < 0:
            raise UserError(f"seq: expected a number from 0, got {first_seq}")
        if len(chunks) > MAX_CHUNKS:
            raise UserError(f"chunks: at most {MAX_CHUNKS} per call, got {len(chunks)}")
        for i, chunk in enumerate(chunks):
            if len(json.dumps(chunk)) > MAX_CHUNK_BYTES:
                raise UserError(f"chunks[{i}]: larger than {MAX_CHUNK_BYTES} bytes as JSON")
        async with self.res.db.write() as conn:
            run = await run_store.get(conn, env_id, run_id)
            if run is None:
                raise RunNotFound(run_id)
            if is_final(RunStatus(run.status)):
                raise PermissionDenied(f"run {run_id} is {run.status}: its streams are closed")
            return await stream_store.append(
                conn, env_id, run_id, run.batch_id, key, first_seq, chunks, self.res.clock.now()
            )

    async def append_next(self, env_id: str, run_id: str, key: str, chunk: Any) -> int:
        """Add one chunk after the stream's last one (``streams.append`` of the
        official SDK); its number."""
        for _ in range(5):  # two writers took the same number: the loser goes again
            async with self.res.db.read() as conn:
                seq = await stream_store.last_seq(conn, run_id, key) + 1
            if await self.append(env_id, run_id, key, seq, [chunk]):
                return seq
        raise ConflictError(f"stream {key!r} of {run_id}: too many writers at once, retry")

    async def keys(self, run_ids: list[str]) -> dict[str, list[str]]:
        """run id → the keys of its streams so far (runs the caller may read)."""
        async with self.res.db.read() as conn:
            return await stream_store.keys(conn, run_ids)

    async def last_seq(self, env_id: str, run_id: str, key: str) -> int:
        """The number of the stream's last chunk stored (-1: none yet)."""
        check_key(key)
        async with self.res.db.read() as conn:
            if await run_store.get(conn, env_id, run_id) is None:
                raise RunNotFound(run_id)
            return await stream_store.last_seq(conn, run_id, key)

    async def read(
        self, env_id: str, run_id: str, key: str, *, after: int = -1, limit: int = 10_000
    ) -> list[tuple[int, Any]]:
        """(seq, chunk) of a run's stream after ``after``, oldest first."""
        check_key(key)
        async with self.res.db.read() as conn:
            if await run_store.get(conn, env_id, run_id) is None:
                raise RunNotFound(run_id)
            return await stream_store.read(conn, run_id, key, after, limit)
