"""The tasks of the fault-injection suite: durable steps, waits, a child run, a token.

Each writes its side effects to a table of its own (``chaos.effects`` has the
schema) with its own asyncpg connection, read from ``CHAOS_EFFECTS_URL``:
never through Triggerfish. Writes are retried until PostgreSQL answers again
(an outage is one of the faults), and keyed by a fresh id per execution, so a
retried write whose first try committed is not counted twice.

Every step returns its effect id: the journal holds it, the run's output lists
it, and the checker compares it with the rows.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import asyncpg

from triggerfish import Context, retry, step, task, wait

_INSERT = (
    "INSERT INTO effects (effect_id, key, run_id, attempt_id, attempt, kind, step, pid, "
    "worker_pid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (effect_id) DO NOTHING"
)
#: how long a write keeps trying while PostgreSQL is down
_WRITE_PATIENCE = 300.0
#: crashes and kills are the point of the suite: leave room for several per run
_RETRY = retry(max_attempts=12, min_delay=0.2, max_delay=2.0)

_conn: dict[int, Any] = {}


async def _connection() -> Any:
    loop = id(asyncio.get_running_loop())
    conn = _conn.get(loop)
    if conn is None or conn.is_closed():
        _conn.clear()  # a connection of an earlier loop is of no use
        conn = await asyncpg.connect(os.environ["CHAOS_EFFECTS_URL"], timeout=5)
        _conn[loop] = conn
    return conn


async def _record(kind: str, key: str, ctx: Context, step_key: str = "") -> str:
    """Write one row; its effect id."""
    effect_id = uuid.uuid4().hex
    row = (
        effect_id,
        key,
        ctx.run.id,
        ctx.attempt.id,
        ctx.attempt.number,
        kind,
        step_key,
        os.getpid(),
        os.getppid(),
    )
    deadline = time.monotonic() + _WRITE_PATIENCE
    while True:
        try:
            conn = await _connection()
            await conn.execute(_INSERT, *row, timeout=10)
            return effect_id
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            _conn.clear()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _effect(key: str, ctx: Context, step_key: str, hold: float) -> str:
    """A step's side effect: the row, then ``hold`` seconds of 'work'."""
    effect_id = await _record("step", key, ctx, step_key)
    await asyncio.sleep(hold)
    return effect_id


async def _steps(payload: dict[str, Any], ctx: Context, prefix: str, count: int) -> dict[str, str]:
    key, hold = payload["key"], float(payload.get("hold", 0.1))
    return {
        f"{prefix}{i}": await step.run(f"{prefix}{i}", _effect, key, ctx, f"{prefix}{i}", hold)
        for i in range(count)
    }


async def _finish(payload: dict[str, Any], ctx: Context, out: dict[str, Any]) -> dict[str, Any]:
    await _record("end", payload["key"], ctx)
    return {"key": payload["key"], **out}


@task(id="chaos-steps", retry=_RETRY)
async def chaos_steps(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Only durable steps."""
    await _record("start", payload["key"], ctx)
    effects = await _steps(payload, ctx, "s", int(payload.get("steps", 3)))
    return await _finish(payload, ctx, {"effects": effects})


@task(id="chaos-wait", retry=_RETRY)
async def chaos_wait(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A step, a wait (long ones suspend the run), a step."""
    await _record("start", payload["key"], ctx)
    effects = await _steps(payload, ctx, "a", 1)
    await wait.for_(seconds=float(payload.get("wait", 1.0)))
    effects |= await _steps(payload, ctx, "b", 1)
    return await _finish(payload, ctx, {"effects": effects})


@task(id="chaos-child", retry=_RETRY)
async def chaos_child(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The child of ``chaos-parent``."""
    await _record("start", payload["key"], ctx)
    effects = await _steps(payload, ctx, "c", 2)
    return await _finish(payload, ctx, {"effects": effects})


@task(id="chaos-parent", retry=_RETRY)
async def chaos_parent(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A step, a child run waited for (with its own idempotency key), a step."""
    await _record("start", payload["key"], ctx)
    effects = await _steps(payload, ctx, "a", 1)
    child_key = payload["key"] + "/child"
    child = await chaos_child.trigger_and_wait(
        {"key": child_key, "hold": payload.get("hold", 0.1)}, idempotency_key=child_key
    )
    effects |= await _steps(payload, ctx, "b", 1)
    return await _finish(payload, ctx, {"effects": effects, "child": child.unwrap()})


@task(id="chaos-token", retry=_RETRY)
async def chaos_token(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """A step, a wait for a token the suite completes, a step."""
    await _record("start", payload["key"], ctx)
    effects = await _steps(payload, ctx, "a", 1)
    approval = await wait.for_token(payload["token"])
    effects |= await _steps(payload, ctx, "b", 1)
    return await _finish(payload, ctx, {"effects": effects, "token": approval.unwrap()})
