"""Replaying a run: a new run of the same task and payload, optionally from a step.

``from_step=N`` copies the original run's finished journal entries before step
N (1-based) into the new run, so its first attempt returns their recorded
results and executes step N onward for real. The new run is created delayed,
gets its journal, and is queued in one transaction, so no worker can claim it
before the journal is there.
"""

from __future__ import annotations

from typing import Any

from triggerfish._domain.records import RunRecord
from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import to_datetime
from triggerfish._durations import parse_duration
from triggerfish.engine.enqueue import Enqueue, TriggerRequest
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import RunNotFound, UserError
from triggerfish.store import journal as journal_store
from triggerfish.store import runs as run_store

#: far enough ahead that the maintenance loop cannot promote the run first
_HOLD = 3600.0


class Replays:
    def __init__(self, res: EngineResources, enqueue: Enqueue) -> None:
        self.res = res
        self.enqueue = enqueue

    async def replay(
        self,
        env_id: str,
        run_id: str,
        from_step: int | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> str:
        """Start a new run like ``run_id`` (same payload and options, linked to it by
        ``replay_of``); ``overrides`` (``TriggerRequest`` field names) replace any
        of them. Returns the new run's id.

        Example::

            new_id = await engine.replays.replay(env_id, "run_…", from_step=4)
        """
        if from_step is not None and from_step < 1:
            raise UserError("fromStep: steps are numbered from 1")
        async with self.res.db.read() as conn:
            original = await run_store.get(conn, env_id, run_id)
            if original is None:
                raise RunNotFound(run_id)
            tags = (await run_store.tags_of(conn, [run_id]))[run_id]
        now = self.res.clock.now()
        req = request_from_run(original, tags)
        for name, value in (overrides or {}).items():
            if not hasattr(req, name) or name in ("task_id", "replay_of", "trigger_function"):
                raise UserError(f"replay: unknown option {name!r}")
            setattr(req, name, value)
        if from_step:
            req.delay_until = now + _HOLD
        created = await self.enqueue.trigger(env_id, req)
        if not from_step:
            return created.id
        async with self.res.db.write() as conn:
            await journal_store.copy_prefix(
                conn, run_id, created.id, from_step - 1, to_datetime(now)
            )
            moved = await run_store.transition(
                conn,
                created.id,
                to=RunStatus.QUEUED,
                now=to_datetime(now),
                reason=f"replay of {run_id} from step {from_step}",
                values={"available_at": now, "order_key": now, "delayed_until": None},
            )
            assert moved is not None
        await self.res.notifier.notify(env_id)
        return created.id


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
