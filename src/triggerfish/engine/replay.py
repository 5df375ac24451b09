"""Replaying a run: a new run of the same task and payload, optionally from a step.

``from_step=N`` copies the original run's finished journal entries before step
N (1-based) into the new run, so its first attempt returns their recorded
results and executes step N onward for real. Reading the original, inserting
the new run, copying its journal and minting its tokens is one transaction: a
failure anywhere leaves nothing behind, and no worker can claim the run before
its journal is there.

Tokens (DECISIONS.md, "Replay from a step"): a token the original created
before step N and that was completed (or timed out) since becomes a new
pending token, its id mapped into the copied journal, and the copy stops at
the first wait for a token after it, so the replay asks again instead of
applying an old approval. ``reuse_tokens=True`` copies them as they are.
"""

from __future__ import annotations

from typing import Any

from triggerfish._domain.records import JournalRecord, RunRecord, WaitpointRecord
from triggerfish._domain.states import JournalStatus, WaitpointStatus
from triggerfish._domain.times import to_datetime
from triggerfish._durations import parse_duration
from triggerfish.engine.enqueue import Enqueue, TriggerRequest
from triggerfish.engine.resources import EngineResources
from triggerfish.engine.waitpoints import TokenRequest, Waitpoints
from triggerfish.errors import RunNotFound, UserError
from triggerfish.store import journal as journal_store
from triggerfish.store import runs as run_store
from triggerfish.store import waitpoints as wp_store

_FINISHED = (JournalStatus.OK.value, JournalStatus.ERROR.value)


class Replays:
    def __init__(self, res: EngineResources, enqueue: Enqueue, waitpoints: Waitpoints) -> None:
        self.res = res
        self.enqueue = enqueue
        self.waitpoints = waitpoints

    async def replay(
        self,
        env_id: str,
        run_id: str,
        from_step: int | None = None,
        overrides: dict[str, Any] | None = None,
        *,
        reuse_tokens: bool = False,
    ) -> str:
        """Start a new run like ``run_id`` (same payload and options, linked to it by
        ``replay_of``); ``overrides`` (``TriggerRequest`` field names) replace any
        of them. Returns the new run's id.

        Example::

            new_id = await engine.replays.replay(env_id, "run_…", from_step=4)
        """
        if from_step is not None and from_step < 1:
            raise UserError("fromStep: steps are numbered from 1")
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            original = await run_store.get(conn, env_id, run_id)
            if original is None:
                raise RunNotFound(run_id)
            tags = (await run_store.tags_of(conn, [run_id]))[run_id]
            entries = await journal_store.list_entries(conn, run_id) if from_step else []
            if from_step and from_step > len(entries) + 1:
                raise UserError(
                    f"fromStep: run {run_id} has {len(entries)} durable step(s); "
                    f"replay from 1 to {len(entries) + 1}"
                )
            req = request_from_run(original, tags)
            for name, value in (overrides or {}).items():
                if not hasattr(req, name) or name in ("task_id", "replay_of", "trigger_function"):
                    raise UserError(f"replay: unknown option {name!r}")
                setattr(req, name, value)
            created, new = await self.enqueue.trigger_in(conn, env_id, req, now)
            if from_step and new is not None:
                below, results = from_step - 1, dict[int, Any]()
                if not reuse_tokens:
                    below, results = await self._fresh_tokens(conn, env_id, new.id, entries, below)
                await journal_store.copy_prefix(
                    conn, run_id, new.id, below, to_datetime(now), results=results
                )
        if new is not None:
            await self.enqueue.committed(new)
        return created.id

    async def _fresh_tokens(
        self,
        conn: Any,
        env_id: str,
        new_run: str,
        entries: list[JournalRecord],
        below: int,
    ) -> tuple[int, dict[int, Any]]:
        """New pending tokens for the finished tokens the original created before
        ``below``: the results to write in their entries instead, and where the
        copy stops (the first token wait after a renewed token)."""
        results: dict[int, Any] = {}
        renewed_at: int | None = None
        for entry in entries:
            if entry.seq >= below:
                break
            if renewed_at is not None and entry.kind == "token.wait":
                return entry.seq, results
            if entry.kind != "token.create" or entry.status not in _FINISHED:
                continue
            old_id = (entry.result or {}).get("id") if isinstance(entry.result, dict) else None
            old = await wp_store.get(conn, str(old_id)) if old_id else None
            if old is None or old.status == WaitpointStatus.PENDING:
                continue
            timeout = old.due_at - old.created_at.timestamp() if old.due_at is not None else None
            now = self.res.clock.now()
            fresh, _ = await self.waitpoints.create_token_in(
                conn,
                env_id,
                TokenRequest(timeout_at=now + timeout if timeout else None, tags=list(old.tags)),
                new_run,
            )
            results[entry.seq] = {**entry.result, "id": fresh.id, "url": _url(entry, fresh)}
            if renewed_at is None:
                renewed_at = entry.seq
        return below, results


def _url(entry: JournalRecord, fresh: WaitpointRecord) -> str:
    """The token URL of ``entry`` for the fresh token: the same base, its id and secret."""
    url = str(entry.result.get("url") or "")
    base = url.split("/api/v1/waitpoints/tokens/")[0]
    return f"{base}/api/v1/waitpoints/tokens/{fresh.id}/callback/{fresh.callback_secret}"


def request_from_run(run: RunRecord, tags: list[str]) -> TriggerRequest:
    """The trigger that starts a replay of ``run``: its task, payload and options,
    taken from the run's record, linked to it by ``replay_of``."""
    return TriggerRequest(
        run.task_identifier,
        run.payload,
        tags=tags,
        metadata=run.run_metadata,
        machine=run.machine,
        max_attempts=run.max_attempts,
        max_duration=run.max_duration,
        queue=run.queue_name,
        concurrency_key=run.concurrency_key,
        # the run keeps its TTL as given ("1h", "90"), which is how a trigger gives it
        ttl=parse_duration(run.ttl) if run.ttl else None,
        ttl_text=run.ttl,
        priority=run.priority,
        trigger_function="replay",
        is_test=run.is_test,
        replay_of=run.id,
    )
