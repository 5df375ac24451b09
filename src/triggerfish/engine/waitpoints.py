"""Waitpoints: what a suspended run waits on, and resuming it exactly once.

A durable wait inside a task (``wait.for_``, ``wait.for_token``,
``trigger_and_wait``, ``wait.for_event``…) arrives here as one call from the
task's attempt. In one transaction it creates (or finds) the waitpoints, links
them to the run's journal position (``waitpoint_waiters``), writes a pending
journal entry and moves the run ``EXECUTING → WAITING``, freeing the worker
slot. If everything it waits on is already resolved (a completed token, a
finished child) it answers with the result instead and the task goes on.

Resolving a waitpoint (time passed, token completed, child finished, event
arrived, timeout) is a guarded ``UPDATE … WHERE status = 'PENDING'``, so it
happens once however many servers try. In the same transaction, each waiting
run whose wait is now fully resolved gets its journal entry filled in and moves
``WAITING → QUEUED``; the normal claim then replays it. Locks are taken in one
order everywhere (child run or token, then the waiting run) so concurrent
resolutions serialise per run instead of deadlocking.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._domain.records import NewWaitpoint, RunRecord, WaitpointRecord
from triggerfish._domain.states import (
    FINAL,
    AttemptStatus,
    JournalStatus,
    RunStatus,
    WaitpointStatus,
)
from triggerfish._domain.times import to_datetime
from triggerfish._ids import new_id
from triggerfish.engine.enqueue import Enqueue, TriggerRequest, schema_error
from triggerfish.engine.journal import Journal, JournalEntry
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import (
    ConflictError,
    PayloadValidationError,
    RunNotFound,
    StaleTransition,
    WaitpointNotFound,
)
from triggerfish.store import events as event_store
from triggerfish.store import journal as journal_store
from triggerfish.store import runs as run_store
from triggerfish.store import waitpoints as wp_store

log = logging.getLogger(__name__)

SWEEP_BATCH = 500
TIMEOUT_CODE = "TRIGGER_WAITPOINT_TIMEOUT"
DEFAULT_TOKEN_KEY_TTL = 30 * 86400.0


@dataclass
class WaitSpec:
    """What one durable wait of a task asks for."""

    #: duration | token | runs | event
    type: str
    #: duration: resume at (epoch seconds); others: time out at (None: never)
    due_at: float | None = None
    token_id: str | None = None
    children: list[TriggerRequest] = field(default_factory=list)
    event_name: str | None = None
    event_filter: dict[str, Any] | None = None
    #: event: only the event sent with this id (``events.send(name, id=...)``) completes it
    event_id: str | None = None
    #: token, event: the JSON Schema what completes the wait must satisfy
    schema: dict[str, Any] | None = None
    #: cancel waiting children when this run is canceled
    cancel_children: bool = True


@dataclass(frozen=True)
class TokenRequest:
    timeout_at: float | None = None
    tags: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    idempotency_key_ttl: float | None = None
    #: the JSON Schema a completion's data must satisfy (a validated token)
    schema: dict[str, Any] | None = None


class Waitpoints:
    def __init__(self, res: EngineResources, journal: Journal, enqueue: Enqueue) -> None:
        self.res = res
        self.journal = journal
        self.enqueue = enqueue

    # -- a task waits -------------------------------------------------------------

    async def wait_from_task(
        self,
        env_id: str,
        run_id: str,
        attempt_id: str,
        *,
        seq: int,
        kind: str,
        name: str,
        spec: WaitSpec,
    ) -> dict[str, Any]:
        """Park the run on ``spec``: ``{"status": "suspended"}`` or ``"resolved"`` + result."""
        children = [
            await self._trigger_child(env_id, run_id, seq, idx, req)
            for idx, req in enumerate(spec.children)
        ]
        now = self.res.clock.now()
        dt = to_datetime(now)
        async with self.res.db.write() as conn:
            # lock what we wait on before the run, the order resolvers use; what
            # they read here cannot change before commit (held, or just made)
            awaited = await self._waitpoints_for(conn, env_id, run_id, spec, children, now)
            pending = JournalEntry(seq=seq, kind=kind, name=name, status=JournalStatus.PENDING)
            journal = self.journal
            if not await journal.write_guarded_in(conn, run_id, attempt_id, pending, env_id, dt):
                raise StaleTransition(run_id, RunStatus.WAITING, attempt_id)
            for idx, wp in enumerate(awaited):
                await wp_store.add_waiter(conn, wp.id, run_id, seq, idx)
            ready, result = _wait_result(awaited, kind)
            if ready:
                await journal_store.set_outcome(
                    conn, run_id, seq, status=JournalStatus.OK, result=result, now=dt
                )
                return {"status": "resolved", "result": result}
            moved = await run_store.transition(
                conn,
                run_id,
                to=RunStatus.WAITING,
                now=dt,
                attempt_id=attempt_id,
                values={"worker_id": None, "lease_expires_at": None},
                reason=f"waiting for {_describe(spec, children)}",
            )
            if moved is None:
                raise StaleTransition(run_id, RunStatus.WAITING, attempt_id)
            await run_store.update_attempt(
                conn, attempt_id, status=AttemptStatus.SUSPENDED, finished_at=dt
            )
        await self.res.slot_freed(env_id)  # a waiting run holds no slot
        return {"status": "suspended"}

    async def _trigger_child(
        self, env_id: str, parent_id: str, seq: int, idx: int, req: TriggerRequest
    ) -> str:
        # keyed on the parent's journal position: a retried or replayed wait
        # finds the same child instead of starting another
        if not req.idempotency_key:
            req.idempotency_key = f"{parent_id}:{seq}:{idx}"
        elif idx > 0:  # one caller key shared by a batch: still one child per item
            req.idempotency_key = f"{req.idempotency_key}:{idx}"[:128]
        req.trigger_function = "triggerAndWait"
        return (await self.enqueue.trigger(env_id, req)).id

    async def _waitpoints_for(
        self,
        conn: AsyncConnection,
        env_id: str,
        run_id: str,
        spec: WaitSpec,
        children: list[str],
        now: float,
    ) -> list[WaitpointRecord]:
        """The waitpoints of this wait, in the order asked for."""
        dt = to_datetime(now)
        if spec.type == "token":
            token = await wp_store.get(conn, spec.token_id or "", lock=True)
            if token is None or token.environment_id != env_id or token.kind != "TOKEN":
                raise WaitpointNotFound(spec.token_id or "")
            if spec.schema is not None and token.schema is None and token.status == "PENDING":
                # a validated wait on a plain token: its completion is checked from now on
                await wp_store.set_schema(conn, token.id, spec.schema)
            return [token]
        if spec.type == "duration":
            wp_id = new_id("waitpoint", now)
            due = spec.due_at or now
            done = due <= now
            row = await wp_store.insert(
                conn,
                NewWaitpoint(
                    id=wp_id,
                    environment_id=env_id,
                    owner_run_id=run_id,
                    created_at=dt,
                    kind="DURATION",
                    status=WaitpointStatus.COMPLETED if done else WaitpointStatus.PENDING,
                    due_at=due,
                    completed_at=dt if done else None,
                ),
            )
            return [row]
        if spec.type == "event":
            sent = await self._sent_already(conn, env_id, spec)
            new = NewWaitpoint(
                id=new_id("waitpoint", now),
                environment_id=env_id,
                owner_run_id=run_id,
                created_at=dt,
                kind="EVENT",
                # the event it correlates with came first
                status=WaitpointStatus.PENDING if sent is None else WaitpointStatus.COMPLETED,
                output=sent,
                completed_at=None if sent is None else dt,
                due_at=spec.due_at,
                event_name=spec.event_name,
                event_filter=spec.event_filter or {},
                event_id=spec.event_id,
                schema=spec.schema,
            )
            return [await wp_store.insert(conn, new)]
        return [
            await self._child_waitpoint(conn, env_id, run_id, child_id, spec, now)
            for child_id in children
        ]

    @staticmethod
    async def _sent_already(
        conn: AsyncConnection, env_id: str, spec: WaitSpec
    ) -> dict[str, Any] | None:
        """For a wait addressed by event id: the event's output if it was sent (and
        accepted) before the wait began, and matches it."""
        if spec.event_id is None or spec.event_name is None:
            return None
        event = await event_store.get_event(conn, env_id, spec.event_name, spec.event_id)
        if event is None or event.errors or not matches(spec.event_filter or {}, event.payload):
            return None
        if schema_error(spec.schema, event.payload) is not None:
            return None
        return {"id": event.id, "name": event.name, "payload": event.payload}

    async def _child_waitpoint(
        self,
        conn: AsyncConnection,
        env_id: str,
        parent_id: str,
        child_id: str,
        spec: WaitSpec,
        now: float,
    ) -> WaitpointRecord:
        child = await wp_store.lock_run(conn, child_id)  # the child's final move waits for us
        if child is None:
            raise RunNotFound(child_id)
        parent = await run_store.get_by_id(conn, parent_id)
        assert parent is not None
        await run_store.transition_values(
            conn,
            child_id,
            parent_run_id=parent_id,
            root_run_id=parent.root_run_id or parent_id,
            depth=parent.depth + 1,
        )
        wp_id = new_id("waitpoint", now)
        new = NewWaitpoint(
            id=wp_id,
            environment_id=env_id,
            owner_run_id=parent_id,
            created_at=to_datetime(now),
            kind="RUN",
            status=WaitpointStatus.PENDING,
            # the parent stops waiting then (the child runs on)
            due_at=spec.due_at,
            child_run_id=child_id,
            tags=["cancel-with-parent"] if spec.cancel_children else [],
        )
        row = await wp_store.insert(conn, new)
        if RunStatus(child.status) in FINAL:  # finished before we got here
            finished = await run_store.get_by_id(conn, child_id)
            assert finished is not None
            output, is_error = _run_outcome(finished)
            done = await wp_store.complete(
                conn,
                wp_id,
                status=WaitpointStatus.COMPLETED,
                output=output,
                is_error=is_error,
                now=to_datetime(now),
            )
            assert done is not None  # made above, pending
            return done
        return row

    # -- resolving ----------------------------------------------------------------

    async def resolve_in(
        self,
        conn: AsyncConnection,
        waitpoint_id: str,
        *,
        status: str,
        output: Any,
        is_error: bool,
        woken: set[str],
    ) -> WaitpointRecord | None:
        """Resolve a waitpoint and requeue the runs it completes; ``None`` if done before."""
        now = self.res.clock.now()
        row = await wp_store.complete(
            conn,
            waitpoint_id,
            status=status,
            output=output,
            is_error=is_error,
            now=to_datetime(now),
        )
        if row is not None:
            await self._resume_waiters(conn, waitpoint_id, now, woken)
        return row

    async def _resume_waiters(
        self, conn: AsyncConnection, waitpoint_id: str, now: float, woken: set[str]
    ) -> None:
        """Requeue the runs waiting on a waitpoint just resolved whose wait is complete."""
        for waiter in await wp_store.lock_waiters(conn, waitpoint_id):
            await self._resume_if_ready(conn, waiter.run_id, waiter.seq, now, woken)

    async def _resume_if_ready(
        self, conn: AsyncConnection, run_id: str, seq: int, now: float, woken: set[str]
    ) -> None:
        # read after the run's lock: a resolver of the same wait that went
        # first has committed, and its outcome (or filled entry) shows here
        wait = await wp_store.pending_wait(conn, run_id, seq)
        if wait is None or wait.entry_status != JournalStatus.PENDING:
            return
        ready, result = _wait_result(wait.waitpoints, wait.entry_kind)
        if not ready:
            return
        dt = to_datetime(now)
        await journal_store.set_outcome(
            conn, run_id, seq, status=JournalStatus.OK, result=result, now=dt
        )
        moved = await run_store.transition(
            conn,
            run_id,
            to=RunStatus.QUEUED,
            now=dt,
            reason="wait resolved",
            values={"available_at": now, "worker_id": None, "lease_expires_at": None},
        )
        if moved is not None:
            woken.add(moved.environment_id)

    async def wake(self, woken: set[str]) -> None:
        """Wake the workers of environments with resumed runs (after commit)."""
        for env_id in woken:
            await self.res.notifier.notify(env_id)

    async def on_run_finished(self, conn: AsyncConnection, row: RunRecord, woken: set[str]) -> None:
        """A run reached a final status: resolve the waits of parents waiting on it."""
        if row.parent_run_id is None:
            return
        output, is_error = _run_outcome(row)
        for waitpoint_id in await wp_store.pending_for_child(conn, row.id):
            await self.resolve_in(
                conn,
                waitpoint_id,
                status=WaitpointStatus.COMPLETED,
                output=output,
                is_error=is_error,
                woken=woken,
            )

    async def children_to_cancel(self, conn: AsyncConnection, run_id: str) -> list[str]:
        """Children a canceled run was waiting on (unless it asked to keep them)."""
        return await wp_store.pending_children_of(conn, run_id)

    async def resolve_due(self) -> int:
        """Maintenance: resolve waits whose time came (durations, timeouts)."""
        now = self.res.clock.now()
        async with self.res.db.read() as conn:
            due = await wp_store.due(conn, now, SWEEP_BATCH)
        resolved = 0
        woken: set[str] = set()
        for wp in due:
            if wp.kind == "DURATION":
                status, output, is_error = WaitpointStatus.COMPLETED, None, False
            else:
                status, is_error = WaitpointStatus.TIMED_OUT, True
                output = {
                    "code": TIMEOUT_CODE,
                    "message": f"Waitpoint timed out at {_iso(to_datetime(wp.due_at))}",
                }
            async with self.res.db.write() as conn:
                done = await self.resolve_in(
                    conn, wp.id, status=status, output=output, is_error=is_error, woken=woken
                )
            resolved += done is not None
        await self.wake(woken)
        return resolved

    # -- tokens ---------------------------------------------------------------------

    async def create_token(
        self, env_id: str, req: TokenRequest, owner_run_id: str | None = None
    ) -> tuple[WaitpointRecord, bool]:
        """A new token (or the one its idempotency key names, ``cached=True``)."""
        async with self.res.db.write() as conn:
            return await self.create_token_in(conn, env_id, req, owner_run_id)

    async def create_token_in(
        self,
        conn: AsyncConnection,
        env_id: str,
        req: TokenRequest,
        owner_run_id: str | None = None,
    ) -> tuple[WaitpointRecord, bool]:
        now = self.res.clock.now()
        if req.idempotency_key:
            found = await wp_store.by_idempotency_key(conn, env_id, req.idempotency_key)
            if found is not None:
                expires = found.idempotency_key_expires_at
                if expires is None or expires > now:
                    return found, True
                await wp_store.clear_idempotency_key(conn, found.id)
        wp_id = new_id("waitpoint", now)
        ttl = req.idempotency_key_ttl or DEFAULT_TOKEN_KEY_TTL
        row = await wp_store.insert(
            conn,
            NewWaitpoint(
                id=wp_id,
                environment_id=env_id,
                kind="TOKEN",
                status=WaitpointStatus.PENDING,
                due_at=req.timeout_at,
                tags=list(req.tags),
                idempotency_key=req.idempotency_key,
                idempotency_key_expires_at=(now + ttl) if req.idempotency_key else None,
                callback_secret=secrets.token_hex(16),
                owner_run_id=owner_run_id,
                created_at=to_datetime(now),
                schema=req.schema,
            ),
        )
        return row, False

    async def create_token_from_task(
        self,
        env_id: str,
        run_id: str,
        attempt_id: str,
        *,
        seq: int,
        name: str,
        req: TokenRequest,
        url_for: Callable[[WaitpointRecord], str],
    ) -> WaitpointRecord:
        """``wait.create_token`` inside a task: the token and its journal entry, together."""
        dt = to_datetime(self.res.clock.now())
        async with self.res.db.write() as conn:
            # a stale attempt's token is rolled back with the refused entry
            row, _ = await self.create_token_in(conn, env_id, req, run_id)
            entry = JournalEntry(
                seq=seq,
                kind="token.create",
                name=name,
                status=JournalStatus.OK,
                result={"id": row.id, "url": url_for(row)},
            )
            journal = self.journal
            if not await journal.write_guarded_in(conn, run_id, attempt_id, entry, env_id, dt):
                raise StaleTransition(run_id, "create a token", attempt_id)
            return row

    async def complete_token(
        self,
        env_id: str,
        token_id: str,
        data: Any,
        *,
        secret: str | None = None,
        root: str = "data",
    ) -> WaitpointRecord:
        """Complete a token; a second completion changes nothing (the first data stays).

        ``secret`` is the callback URL's part, checked instead of an API key.
        Unknown tokens raise ``WaitpointNotFound``; timed-out ones ``ConflictError``;
        data a validated token's schema refuses ``PayloadValidationError`` naming
        the field under ``root`` (the token stays pending).
        """
        woken: set[str] = set()
        async with self.res.db.write() as conn:
            row = None
            if secret is None:  # with an API key: a pending token completes in one statement
                row = await self._complete_pending_token(conn, env_id, token_id, data, woken)
            if row is None:
                row = await self._complete_checked(
                    conn, env_id, token_id, data, secret, woken, root
                )
        await self.wake(woken)
        return row

    async def _complete_pending_token(
        self, conn: AsyncConnection, env_id: str, token_id: str, data: Any, woken: set[str]
    ) -> WaitpointRecord | None:
        now = self.res.clock.now()
        row = await wp_store.complete_token(
            conn, token_id, env_id, output=data, now=to_datetime(now)
        )
        if row is not None:
            await self._resume_waiters(conn, token_id, now, woken)
        return row

    async def _complete_checked(
        self,
        conn: AsyncConnection,
        env_id: str,
        token_id: str,
        data: Any,
        secret: str | None,
        woken: set[str],
        root: str = "data",
    ) -> WaitpointRecord:
        """Read the token first: check the callback secret and the token's schema, or
        say why it cannot complete."""
        token = await wp_store.get(conn, token_id, lock=True)
        if token is None or token.kind != "TOKEN":
            raise WaitpointNotFound(token_id)
        if secret is not None:
            if not token.callback_secret or not secrets.compare_digest(
                secret, token.callback_secret
            ):
                raise WaitpointNotFound(token_id)
        elif token.environment_id != env_id:
            raise WaitpointNotFound(token_id)
        if token.status == WaitpointStatus.TIMED_OUT:
            raise ConflictError(
                f"waitpoint {token_id!r} timed out at {_iso(token.completed_at)} and "
                "can no longer be completed"
            )
        if token.status == WaitpointStatus.PENDING:
            refused = schema_error(token.schema, data, root)
            if refused is not None:
                raise refused
            done = await self.resolve_in(
                conn,
                token_id,
                status=WaitpointStatus.COMPLETED,
                output=data,
                is_error=False,
                woken=woken,
            )
            return done if done is not None else token
        return token

    async def get_token(self, env_id: str, token_id: str) -> WaitpointRecord:
        async with self.res.db.read() as conn:
            row = await wp_store.get(conn, token_id)
        if row is None or row.environment_id != env_id or row.kind != "TOKEN":
            raise WaitpointNotFound(token_id)
        return row

    async def list_tokens(
        self,
        env_id: str,
        *,
        statuses: list[str],
        idempotency_key: str | None,
        tags: list[str],
        size: int,
        after: str | None,
    ) -> tuple[list[WaitpointRecord], bool]:
        async with self.res.db.read() as conn:
            return await wp_store.page_tokens(
                conn,
                env_id,
                statuses=statuses,
                idempotency_key=idempotency_key,
                tags=tags,
                size=size,
                after=after,
            )

    # -- events ---------------------------------------------------------------------

    async def deliver_event_in(
        self,
        conn: AsyncConnection,
        env_id: str,
        name: str,
        payload: Any,
        event_id: str,
        woken: set[str],
    ) -> int:
        """Resolve the ``wait.for_event`` waits this event matches: those for any id
        whose ``match`` it meets, and those for its id."""
        resolved = 0
        for wp in await wp_store.pending_events(conn, env_id, name, event_id):
            if not matches(wp.event_filter or {}, payload):
                continue
            if schema_error(wp.schema, payload) is not None:
                continue  # a validated wait stays open for a valid event
            output = {"id": event_id, "name": name, "payload": payload}
            done = await self.resolve_in(
                conn,
                wp.id,
                status=WaitpointStatus.COMPLETED,
                output=output,
                is_error=False,
                woken=woken,
            )
            resolved += done is not None
        return resolved

    async def refusal_of(
        self, env_id: str, name: str, event_id: str, payload: Any
    ) -> PayloadValidationError | None:
        """Why a validated wait addressed by ``event_id`` refuses this event, if one does."""
        async with self.res.db.read() as conn:
            waits = await wp_store.pending_events(conn, env_id, name, event_id)
        for wp in waits:
            if wp.event_id != event_id or not matches(wp.event_filter or {}, payload):
                continue
            refused = schema_error(wp.schema, payload)
            if refused is not None:
                return PayloadValidationError(
                    refused.field,
                    f"event {name!r} with id {event_id!r} refused by the wait of run "
                    f"{wp.owner_run_id}: {refused} (nothing recorded; the wait stays open)",
                )
        return None

    # -- what runs wait on ------------------------------------------------------------

    async def waiting_for(self, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Pending waitpoints of each run, as shown in the run record."""
        out: dict[str, list[dict[str, Any]]] = {rid: [] for rid in run_ids}
        async with self.res.db.read() as conn:
            pending = await wp_store.pending_of_runs(conn, run_ids)
        for waiter_run_id, waitpoint in pending:
            out[waiter_run_id].append(describe_waitpoint(waitpoint))
        return out


def matches(flt: dict[str, Any], payload: Any) -> bool:
    """Whether ``payload`` has every key of ``flt`` with an equal value (nested dicts too)."""
    if not isinstance(payload, dict):
        return not flt
    for key, want in flt.items():
        if key not in payload:
            return False
        have = payload[key]
        if isinstance(want, dict) and isinstance(have, dict):
            if not matches(want, have):
                return False
        elif have != want:
            return False
    return True


def describe_waitpoint(row: WaitpointRecord) -> dict[str, Any]:
    """A pending waitpoint for people and the API: what exactly the run waits for."""
    info: dict[str, Any] = {"id": row.id, "type": row.kind, "status": row.status}
    if row.kind == "DURATION":
        info["until"] = _iso(to_datetime(row.due_at)) if row.due_at else None
    elif row.kind == "TOKEN":
        info["tokenId"] = row.id
    elif row.kind == "RUN":
        info["runId"] = row.child_run_id
    elif row.kind == "EVENT":
        info["event"] = row.event_name
        info["filter"] = row.event_filter or {}
    if row.kind != "DURATION" and row.due_at:
        info["timeoutAt"] = _iso(to_datetime(row.due_at))
    return info


def _wait_result(rows: list[WaitpointRecord], kind: str) -> tuple[bool, Any]:
    """Whether every waitpoint of a wait is resolved, and what the wait returns then."""
    if not rows or any(r.status == WaitpointStatus.PENDING for r in rows):
        return False, None
    outcomes = [_outcome(r) for r in rows]
    if kind == "batch":
        return True, outcomes
    return True, outcomes[0]


def _outcome(row: WaitpointRecord) -> Any:
    if row.kind == "DURATION":
        return None
    ident = row.child_run_id if row.kind == "RUN" else row.id
    if row.output_is_error:
        return {"ok": False, "id": ident, "error": row.output}
    return {"ok": True, "id": ident, "output": row.output}


def _run_outcome(row: RunRecord) -> tuple[Any, bool]:
    if row.status == RunStatus.COMPLETED:
        return row.output, False
    error = dict(row.error or {})
    error.setdefault("message", f"the run ended {row.status}")
    error["status"] = row.status
    return error, True


def _describe(spec: WaitSpec, children: list[str]) -> str:
    if spec.type == "duration":
        return f"a duration (until {_iso(to_datetime(spec.due_at or 0))})"
    if spec.type == "token":
        return f"token {spec.token_id}"
    if spec.type == "event":
        return f"event {spec.event_name!r}"
    return f"run(s) {', '.join(children)}"


def _iso(value: datetime | None) -> str:
    return (value.isoformat() + "Z") if value else ""
