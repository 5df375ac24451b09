"""Creating runs: validation, idempotency, queue choice, the insert, the wake-up."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from triggerfish._domain.machines import DEFAULT_MACHINE
from triggerfish._domain.records import NewBatch, NewRun
from triggerfish._domain.states import RunStatus
from triggerfish._domain.times import to_datetime
from triggerfish._ids import new_id
from triggerfish.engine.handoff import Handoffs, ParkedClaim
from triggerfish.engine.manifests import ManifestCache
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import (
    BatchNotFound,
    PayloadTooLarge,
    PayloadValidationError,
    TaskNotFound,
    UserError,
)
from triggerfish.store import batches as batch_store
from triggerfish.store import queues as queue_store
from triggerfish.store import runs as run_store
from triggerfish.store import workers as worker_store
from triggerfish.store.errors import DuplicateKey

MAX_TAGS = 10
DEFAULT_IDEMPOTENCY_TTL = 30 * 86400.0


@dataclass(frozen=True)
class Debounce:
    """Collapse a burst of triggers with the same ``key`` into one run.

    The run waits ``delay`` seconds, counted from the last trigger of the burst
    (``mode="trailing"``, the default) or from the first (``"leading"``); the
    last trigger's payload wins. ``max_delay`` bounds how far a burst can push
    the start, counted from the first trigger.
    """

    key: str
    delay: float
    mode: str = "trailing"
    max_delay: float | None = None


@dataclass
class TriggerRequest:
    """Everything a trigger may ask for, already parsed into engine terms."""

    task_id: str
    payload: Any = None
    payload_type: str = "application/json"
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    idempotency_key_raw: str | None = None
    idempotency_key_ttl: float | None = None
    machine: str | None = None
    max_attempts: int | None = None
    max_duration: float | None = None
    queue: str | None = None
    concurrency_key: str | None = None
    delay_until: float | None = None  # epoch seconds
    ttl: float | None = None  # seconds
    ttl_text: str | None = None
    priority: float = 0.0
    trigger_function: str = "trigger"
    is_test: bool = False
    debounce: Debounce | None = None
    replay_of: str | None = None
    schedule_id: str | None = None
    #: the caller's W3C ``traceparent``: the run's trace continues the caller's
    trace_context: str | None = None
    #: the call's request key (``x-trigger-request-idempotency-key``): the same on
    #: every retry of one call, so a retry whose first try made a run answers that run
    request_key: str | None = None


@dataclass(frozen=True)
class TriggerResult:
    id: str
    is_cached: bool
    #: the trigger joined a debounced run that was already waiting
    debounced: bool = False


@dataclass(frozen=True)
class ItemRefusal:
    """A batch item that got no run, and why; the batch's other items go on."""

    index: int
    task_id: str
    message: str
    #: TASK_NOT_FOUND, PAYLOAD_INVALID, PAYLOAD_TOO_LARGE or INVALID_OPTIONS
    code: str

    def as_json(self) -> dict[str, Any]:
        """As the batch keeps it and Trigger.dev's ``processing.errors`` shows it."""
        return {
            "index": self.index,
            "taskIdentifier": self.task_id,
            "error": self.message,
            "errorCode": self.code,
        }


#: a batch item: the run to create, or why it was refused before reaching the engine
BatchEntry = TriggerRequest | ItemRefusal


@dataclass(frozen=True)
class BatchResult:
    id: str
    #: the runs made (or reused by idempotency key), in item order; refused items have none
    run_ids: list[str]
    is_cached: bool = False
    errors: list[ItemRefusal] = field(default_factory=list)


#: the most items one batch may hold
MAX_BATCH_ITEMS = 1000


def _refusal(stored: dict[str, Any]) -> ItemRefusal:
    return ItemRefusal(
        int(stored["index"]),
        str(stored.get("taskIdentifier", "")),
        str(stored.get("error", "")),
        str(stored.get("errorCode", "")),
    )


class Enqueue:
    def __init__(self, res: EngineResources, manifests: ManifestCache, handoffs: Handoffs) -> None:
        self.res = res
        self.manifests = manifests
        self.handoffs = handoffs
        # queues seen in the store: they are never deleted, so a trigger into
        # one of them need not check for it again
        self._known_queues: set[tuple[str, str]] = set()

    async def trigger(self, env_id: str, req: TriggerRequest) -> TriggerResult:
        """Create a run (or find the one its idempotency key names, or join the
        debounced run of its key)."""
        self._check_size(req.payload)
        for attempt in range(3):
            try:
                return await self._trigger_once(env_id, req)
            except DuplicateKey:
                if req.request_key:
                    # a try of this very call made the run first (a retry on
                    # another server while the first try was still in flight)
                    made = await self._made_by_request(env_id, req.request_key)
                    if made is not None:
                        return made
                if req.idempotency_key:
                    # a concurrent trigger with the same idempotency key won the insert
                    return await self._after_race(env_id, req)
                if req.debounce is None or attempt == 2:
                    raise
                # a concurrent first trigger of the burst won: join its run
        raise AssertionError("unreachable")

    async def _trigger_once(self, env_id: str, req: TriggerRequest) -> TriggerResult:
        now = self.res.clock.now()
        alone = await self._trigger_alone(env_id, req, now)
        if alone is not None:
            return alone
        async with self.res.db.write() as conn:
            result, new = await self.trigger_in(conn, env_id, req, now)
        if new is not None:
            await self.committed(new)
        return result

    async def trigger_in(
        self, conn: Any, env_id: str, req: TriggerRequest, now: float
    ) -> tuple[TriggerResult, NewRun | None]:
        """The trigger inside the caller's transaction; the new run, if one was
        inserted, for :meth:`committed` once the transaction has committed.

        On PostgreSQL the insert must be the transaction's last statement unless
        the caller's transaction has already sent a statement of its own (see
        ``db.fetch_on_driver``)."""
        manifest = await self._manifest(conn, env_id, req.task_id)
        _validate(manifest.get("payload_schema"), req.payload)
        if req.idempotency_key:
            if req.request_key:  # a retry answers as its first try did, not as cached
                made = await run_store.run_by_request_key(conn, env_id, req.request_key)
                if made is not None:
                    return TriggerResult(made, False), None
            cached = await self._cached_run(conn, env_id, req, now)
            if cached is not None:
                return TriggerResult(cached, True), None
        if req.debounce is not None:
            joined = await self._join_debounced(conn, env_id, req, now)
            if joined is not None:
                return TriggerResult(joined, False, debounced=True), None
        new = self._new_run(env_id, req, manifest, now)
        if (env_id, new.queue_name) not in self._known_queues:
            await worker_store.ensure_queues(
                conn,
                env_id,
                [{"name": new.queue_name}],
                to_datetime(now),
                update_limits=False,
            )
        await self._insert(conn, new)
        return TriggerResult(new.id, False), new

    async def committed(self, new: NewRun) -> None:
        """After the commit of :meth:`trigger_in`: remember its queue, wake claimers."""
        self._known_queues.add((new.environment_id, new.queue_name))
        if new.status == RunStatus.QUEUED:
            await self.res.notifier.notify(new.environment_id)

    async def _trigger_alone(
        self, env_id: str, req: TriggerRequest, now: float
    ) -> TriggerResult | None:
        """The common trigger as one statement of its own, or None to take the full path.

        On PostgreSQL, when the task's manifest and queue are already known and
        the trigger has no idempotency key or debounce, the run's insert is all
        there is to do: it runs on a held connection, without BEGIN/COMMIT
        (``Database.fetch_alone``). When a worker's claim is parked on this server
        for the task, the same statement may hand it the run (``engine/handoff.py``).
        """
        one_statement = self.res.db.capabilities.one_statement_trigger
        if not one_statement or req.idempotency_key or req.debounce:
            return None
        manifest = self.manifests.cached(env_id, req.task_id)
        if manifest is None:
            return None
        _validate(manifest.get("payload_schema"), req.payload)
        new = self._new_run(env_id, req, manifest, now)
        if new.status != RunStatus.QUEUED:
            return None
        if (env_id, new.queue_name) not in self._known_queues:
            return None
        parked = self.handoffs.take(env_id, req.task_id)
        if parked is None:
            await run_store.insert_queued_run_alone(
                self.res.db, new, now=self.res.clock.now(), quantum=FAIR_QUANTUM
            )
        elif await self._hand_off(parked, new):
            return TriggerResult(new.id, False)  # stored claimed: no claim to wake
        await self.res.notifier.notify(env_id)
        return TriggerResult(new.id, False)

    async def _hand_off(self, parked: ParkedClaim, new: NewRun) -> bool:
        """Insert the run claimed for ``parked`` if the database allows it (see
        ``engine/handoff.py``); True if it was handed over, False if only queued."""
        now = self.res.clock.now()
        worker = parked.worker
        hand_off = run_store.HandOff(
            task_ids=worker.task_ids,
            version=worker.version,
            worker_id=worker.id,
            attempt_id=new_id("attempt", now),
            lease_expires_at=now + self.res.settings.heartbeat_timeout,
            start=parked.start,
            now_at=to_datetime(now),
            reason=f"claimed by {worker.id}",
        )
        try:
            _, claimed = await run_store.insert_and_hand_off_alone(
                self.res.db, new, now=now, quantum=FAIR_QUANTUM, hand_off=hand_off
            )
        except BaseException:
            self.handoffs.give_back(parked)
            raise
        if claimed is None:
            self.handoffs.give_back(parked)  # and the notify that follows wakes it
            return False
        await self.handoffs.deliver(parked, [claimed])
        return True

    async def _insert(self, conn: Any, new: NewRun) -> None:
        """Insert a new run, with a fair tag if it is queued now."""
        if new.status != RunStatus.QUEUED:
            await run_store.insert_run(conn, new)
            return
        await run_store.insert_queued_run(conn, new, now=self.res.clock.now(), quantum=FAIR_QUANTUM)

    async def _manifest(self, conn: Any, env_id: str, task_id: str) -> dict[str, Any]:
        manifest = await self.manifests.latest(conn, env_id, task_id)
        if manifest is None:
            known = await worker_store.known_task_ids(conn, env_id)
            raise TaskNotFound(task_id, known)
        return manifest

    async def _join_debounced(
        self, conn: Any, env_id: str, req: TriggerRequest, now: float
    ) -> str | None:
        """Fold this trigger into the waiting run of its debounce key, if there is one."""
        assert req.debounce is not None
        row = await run_store.find_debounced(conn, env_id, req.task_id, req.debounce.key)
        if row is None:
            return None
        start = row.available_at
        if req.debounce.mode == "trailing":
            start = now + req.debounce.delay
            if row.debounce_until is not None:
                start = min(start, row.debounce_until)
        moved = await run_store.update_debounced(
            conn,
            row.id,
            payload=req.payload,
            metadata=req.metadata if req.metadata is not None else row.run_metadata,
            start=start,
            when=to_datetime(start),
            now=to_datetime(now),
        )
        return row.id if moved else None

    # -- batches -----------------------------------------------------------------------

    async def trigger_batch(
        self,
        env_id: str,
        requests: Sequence[BatchEntry],
        *,
        idempotency_key: str | None = None,
        request_key: str | None = None,
    ) -> BatchResult:
        """Create a batch and all its runs in one transaction with batched inserts.

        Every item is checked (task known, payload valid and not too big); a
        bad item gets no run and an error naming it (``items[3].payload.email``)
        in the batch's ``errors``, while the others are created: the batch ends
        ``PARTIAL_FAILED``. Items with an idempotency key that names a live run
        reuse that run. A retry of the call (the same ``request_key``) answers the
        batch its first try made.
        """
        self._check_batch(requests)
        try:
            return await self._trigger_batch_once(env_id, requests, idempotency_key, request_key)
        except DuplicateKey:
            if not request_key:
                raise
            # a try of this very call made the batch first: answer it
            return await self._trigger_batch_once(env_id, requests, idempotency_key, request_key)

    async def _trigger_batch_once(
        self,
        env_id: str,
        requests: Sequence[BatchEntry],
        idempotency_key: str | None,
        request_key: str | None,
    ) -> BatchResult:
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            made = await self._batch_made_by(conn, env_id, request_key)
            if made is not None:
                return made
            if idempotency_key:
                cached = await batch_store.find_idempotent(conn, env_id, idempotency_key)
                if cached is not None:
                    ids = await batch_store.run_ids(conn, cached.id)
                    errors = [_refusal(e) for e in cached.errors or []]
                    return BatchResult(cached.id, ids, True, errors)
            batch_id = await self._new_batch(
                conn, env_id, len(requests), idempotency_key, now, request_key
            )
            ids, refused = await self._insert_items(
                conn, env_id, batch_id, list(enumerate(requests)), now
            )
            if refused:
                await batch_store.add_errors(conn, batch_id, [r.as_json() for r in refused])
            await batch_store.seal(conn, batch_id, to_datetime(now))
        if ids:
            await self.res.notifier.notify(env_id)
        return BatchResult(batch_id, ids, errors=refused)

    async def create_batch(
        self,
        env_id: str,
        run_count: int,
        idempotency_key: str | None = None,
        request_key: str | None = None,
    ) -> BatchResult:
        """Phase one of a streamed batch: the batch, with room for ``run_count`` items."""
        if not 1 <= run_count <= MAX_BATCH_ITEMS:
            raise UserError(f"runCount: must be 1 to {MAX_BATCH_ITEMS}, got {run_count}")
        try:
            return await self._create_batch_once(env_id, run_count, idempotency_key, request_key)
        except DuplicateKey:
            if not request_key:
                raise
            return await self._create_batch_once(env_id, run_count, idempotency_key, request_key)

    async def _create_batch_once(
        self, env_id: str, run_count: int, idempotency_key: str | None, request_key: str | None
    ) -> BatchResult:
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            made = await self._batch_made_by(conn, env_id, request_key)
            if made is not None:
                return made
            if idempotency_key:
                cached = await batch_store.find_idempotent(conn, env_id, idempotency_key)
                if cached is not None:
                    return BatchResult(cached.id, await batch_store.run_ids(conn, cached.id), True)
            batch_id = await self._new_batch(
                conn, env_id, run_count, idempotency_key, now, request_key
            )
        return BatchResult(batch_id, [])

    async def _batch_made_by(
        self, conn: Any, env_id: str, request_key: str | None
    ) -> BatchResult | None:
        """The batch an earlier try of this call made (its first answer), if one did."""
        if not request_key:
            return None
        made = await batch_store.by_request_key(conn, env_id, request_key)
        if made is None:
            return None
        errors = [_refusal(e) for e in made.errors or []]
        return BatchResult(made.id, await batch_store.run_ids(conn, made.id), False, errors)

    async def add_batch_items(
        self, env_id: str, batch_id: str, items: Sequence[tuple[int, BatchEntry]]
    ) -> tuple[int, int, bool]:
        """Phase two: create the runs of ``items`` (index, request) not created yet.

        Returns (accepted, deduplicated, sealed). Items are deduplicated by
        index, so resending the whole stream is harmless. A refused item (see
        :meth:`trigger_batch`) is recorded in the batch's errors and counts as
        handled: it is neither accepted nor retried by a resend.
        """
        self._check_batch([r for _, r in items])
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            batch = await batch_store.get_for_update(conn, env_id, batch_id)
            if batch is None:
                raise BatchNotFound(batch_id)
            for index, _ in items:
                if not 0 <= index < batch.run_count:
                    raise UserError(
                        f"items: index {index} is outside the batch's runCount {batch.run_count}"
                    )
            done = set(await batch_store.indexes(conn, batch_id))
            done.update(int(e["index"]) for e in batch.errors or [])
            fresh: dict[int, BatchEntry] = {}
            for index, req in items:
                if index not in done:
                    fresh.setdefault(index, req)
            refused: list[ItemRefusal] = []
            if fresh:
                _, refused = await self._insert_items(
                    conn, env_id, batch_id, sorted(fresh.items()), now
                )
            if refused:
                await batch_store.add_errors(conn, batch_id, [r.as_json() for r in refused])
            sealed = len(done) + len(fresh) >= batch.run_count
            if sealed and batch.sealed_at is None:
                await batch_store.seal(conn, batch_id, to_datetime(now))
        if len(fresh) > len(refused):
            await self.res.notifier.notify(env_id)
        return len(fresh) - len(refused), len(items) - len(fresh), sealed

    def _check_batch(self, requests: Sequence[BatchEntry]) -> None:
        if not requests:
            raise UserError("items: a batch needs at least one item")
        if len(requests) > MAX_BATCH_ITEMS:
            raise UserError(f"items: at most {MAX_BATCH_ITEMS} per batch, got {len(requests)}")

    def _refuse_early(self, index: int, req: TriggerRequest) -> ItemRefusal | None:
        """Why an item cannot become a run before its task is looked up, if it cannot."""
        try:
            self._check_size(req.payload)
        except PayloadTooLarge as exc:
            return ItemRefusal(
                index, req.task_id, f"items[{index}].payload: {exc}", "PAYLOAD_TOO_LARGE"
            )
        if req.debounce is not None:
            message = f"items[{index}].options.debounce: not supported in batches"
            return ItemRefusal(index, req.task_id, message, "INVALID_OPTIONS")
        return None

    async def _new_batch(
        self,
        conn: Any,
        env_id: str,
        run_count: int,
        key: str | None,
        now: float,
        request_key: str | None = None,
    ) -> str:
        batch_id = new_id("batch", now)
        await batch_store.insert_batch(
            conn,
            NewBatch(
                id=batch_id,
                environment_id=env_id,
                run_count=run_count,
                idempotency_key=key,
                request_key=request_key,
                created_at=to_datetime(now),
                updated_at=to_datetime(now),
            ),
        )
        return batch_id

    async def _insert_items(
        self,
        conn: Any,
        env_id: str,
        batch_id: str,
        entries: list[tuple[int, BatchEntry]],
        now: float,
    ) -> tuple[list[str], list[ItemRefusal]]:
        """Validate and insert many runs with a fixed number of statements per
        distinct task, queue and fair bucket (not per item). Items that cannot
        become runs come back as refusals, in index order."""
        refused: list[ItemRefusal] = []
        checked: list[tuple[int, TriggerRequest]] = []
        for index, entry in entries:
            early = entry if isinstance(entry, ItemRefusal) else self._refuse_early(index, entry)
            if early is not None:
                refused.append(early)
            else:
                assert isinstance(entry, TriggerRequest)
                checked.append((index, entry))
        manifests: dict[str, dict[str, Any]] = {}
        unknown: dict[str, str] = {}
        for task_id in sorted({r.task_id for _, r in checked}):
            try:
                manifests[task_id] = await self._manifest(conn, env_id, task_id)
            except TaskNotFound as exc:
                unknown[task_id] = str(exc)
        items: list[tuple[int, TriggerRequest]] = []
        for index, req in checked:
            if req.task_id in unknown:
                refused.append(
                    ItemRefusal(index, req.task_id, unknown[req.task_id], "TASK_NOT_FOUND")
                )
                continue
            try:
                _validate(manifests[req.task_id].get("payload_schema"), req.payload)
            except PayloadValidationError as exc:
                message = f"items[{index}].{exc.field}: {str(exc)[len(exc.field) + 2 :]}"
                refused.append(ItemRefusal(index, req.task_id, message, "PAYLOAD_INVALID"))
                continue
            items.append((index, req))
        refused.sort(key=lambda r: r.index)
        keyed = [(r.task_id, r.idempotency_key) for _, r in items if r.idempotency_key]
        existing = await run_store.find_idempotent_many(conn, env_id, keyed, now)
        ids: list[str] = []
        news: list[NewRun] = []
        seen: dict[tuple[str, str], str] = {}
        for index, req in items:
            key = (req.task_id, req.idempotency_key) if req.idempotency_key else None
            if key is not None and key in existing:
                ids.append(existing[key])
                continue
            if key is not None and key in seen:
                ids.append(seen[key])
                continue
            new = self._new_run(
                env_id,
                req,
                manifests[req.task_id],
                now,
                batch_id=batch_id,
                batch_index=index,
                trigger_function="batchTrigger",
            )
            news.append(new)
            ids.append(new.id)
            if key is not None:
                seen[key] = new.id
        if news:
            await worker_store.ensure_queues(
                conn,
                env_id,
                [{"name": n} for n in sorted({v.queue_name for v in news})],
                to_datetime(now),
                update_limits=False,
            )
            await run_store.insert_runs(conn, await self._tag_many(conn, env_id, news))
        return ids, refused

    async def _tag_many(self, conn: Any, env_id: str, news: list[NewRun]) -> list[NewRun]:
        """``news`` with fair tags for the queued ones: one reservation per bucket."""
        buckets: dict[tuple[str, str | None], list[int]] = {}
        for i, new in enumerate(news):
            if new.status == RunStatus.QUEUED:
                buckets.setdefault((new.queue_name, new.concurrency_key), []).append(i)
        tagged = list(news)
        for (queue_name, concurrency_key), members in sorted(
            buckets.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
        ):
            first = await fair_tag(
                conn, self.res, env_id, queue_name, concurrency_key, len(members)
            )
            for n, i in enumerate(members):
                order_key = first + n * FAIR_QUANTUM - news[i].priority
                tagged[i] = dataclasses.replace(news[i], order_key=order_key)
        return tagged

    async def _made_by_request(self, env_id: str, request_key: str) -> TriggerResult | None:
        async with self.res.db.read() as conn:
            made = await run_store.run_by_request_key(conn, env_id, request_key)
        return None if made is None else TriggerResult(made, False)

    async def _after_race(self, env_id: str, req: TriggerRequest) -> TriggerResult:
        async with self.res.db.read() as conn:
            row = await run_store.find_idempotent(
                conn, env_id, req.task_id, req.idempotency_key or ""
            )
        if row is None:  # the winner's key expired in between: vanishingly rare
            raise RuntimeError("idempotency race could not be resolved; retry the trigger")
        return TriggerResult(row.id, True)

    async def _cached_run(
        self, conn: Any, env_id: str, req: TriggerRequest, now: float
    ) -> str | None:
        assert req.idempotency_key is not None
        found = await run_store.idempotent_run(conn, env_id, req.task_id, req.idempotency_key)
        if found is None:
            return None
        run_id, expires_at = found
        if expires_at is None or expires_at > now:
            return run_id
        await run_store.clear_idempotency_key(conn, run_id)
        return None

    def _check_size(self, payload: Any) -> None:
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        if size > self.res.settings.max_payload_bytes:
            raise PayloadTooLarge(size, self.res.settings.max_payload_bytes)

    def _new_run(
        self,
        env_id: str,
        req: TriggerRequest,
        manifest: dict[str, Any],
        now: float,
        *,
        batch_id: str | None = None,
        batch_index: int | None = None,
        trigger_function: str | None = None,
    ) -> NewRun:
        created = to_datetime(now)
        delay_until = req.delay_until
        if req.debounce is not None:
            delay_until = max(delay_until or now, now + req.debounce.delay)
        delayed = delay_until is not None and delay_until > now
        start_at = delay_until if delayed and delay_until else now
        ttl_key = req.idempotency_key_ttl or DEFAULT_IDEMPOTENCY_TTL
        return NewRun(
            id=new_id("run", now),
            environment_id=env_id,
            task_identifier=req.task_id,
            queue_name=req.queue or manifest["queue"]["name"],
            concurrency_key=req.concurrency_key,
            status=(RunStatus.DELAYED if delayed else RunStatus.QUEUED).value,
            payload=req.payload,
            payload_type=req.payload_type,
            tags=sorted(set(req.tags)),
            run_metadata=req.metadata,
            idempotency_key=req.idempotency_key,
            idempotency_key_raw=req.idempotency_key_raw,
            idempotency_key_expires_at=(now + ttl_key) if req.idempotency_key else None,
            machine=req.machine or manifest.get("machine") or DEFAULT_MACHINE,
            max_attempts=req.max_attempts,
            max_duration=req.max_duration,
            priority=req.priority,
            ttl=req.ttl_text,
            expires_at=(start_at + req.ttl) if req.ttl else None,
            available_at=start_at,
            # priority is a head start: a run with priority 10 sorts as if
            # queued 10 s earlier
            order_key=start_at - req.priority,
            trigger_function=trigger_function or req.trigger_function,
            is_test=req.is_test,
            replay_of=req.replay_of,
            schedule_id=req.schedule_id,
            debounce_key=req.debounce.key if req.debounce else None,
            debounce_until=(
                now + req.debounce.max_delay if req.debounce and req.debounce.max_delay else None
            ),
            created_at=created,
            updated_at=created,
            delayed_until=to_datetime(start_at) if delayed else None,
            batch_id=batch_id,
            batch_index=batch_index,
            trace_context=req.trace_context,
            request_key=req.request_key,
        )


#: fair-tag distance between consecutive runs of one (queue, concurrency key)
FAIR_QUANTUM = 0.001


async def fair_tag(
    conn: Any,
    res: EngineResources,
    env_id: str,
    queue_name: str,
    concurrency_key: str | None,
    count: int = 1,
) -> float:
    """The first of ``count`` fair tags for new runs of a bucket (start-time fair queuing).

    A bucket is a (queue, concurrency key) pair. Its next run starts at the
    service clock (the newest order key holding a slot, else the oldest
    waiting, else now) unless the bucket's own backlog already reaches further;
    each run moves the bucket on by one quantum. So a bucket that queued 1,000
    runs is interleaved with one that arrives later, instead of going first.
    """
    return await queue_store.take_tags(
        conn, env_id, queue_name, concurrency_key, res.clock.now(), count, FAIR_QUANTUM
    )


#: the schema of ``payload: dict`` (and ``dict[str, Any]``), checked without jsonschema:
#: a trigger of such a task is on the hot path
_PLAIN_OBJECT = {"additionalProperties": True, "type": "object"}
#: validators of the manifests' schemas, by the schema object's id (a manifest is
#: cached and its schema reused, so this is a hit on every trigger of a known task)
_VALIDATORS: dict[int, tuple[dict[str, Any], Any]] = {}
_MAX_VALIDATORS = 512


def _validator(schema: dict[str, Any]) -> Any:
    known = _VALIDATORS.get(id(schema))
    if known is not None and known[0] is schema:
        return known[1]
    if len(_VALIDATORS) >= _MAX_VALIDATORS:
        _VALIDATORS.clear()
    validator = jsonschema.Draft202012Validator(schema)
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


def _validate(schema: dict[str, Any] | None, payload: Any, root: str = "payload") -> None:
    """Raise ``PayloadValidationError`` naming the first bad field (under ``root``)
    when ``payload`` does not satisfy the JSON Schema ``schema``."""
    if not schema:
        return
    if schema == _PLAIN_OBJECT:
        if isinstance(payload, dict):
            return
        raise PayloadValidationError(
            root, f"{json.dumps(payload)[:80]} is not of type 'object' (a dict is expected)"
        )
    validator = _validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(payload))
    if error is None:
        return
    path = [root, *(str(p) for p in error.absolute_path)]
    message = error.message
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [f for f in error.validator_value if f not in error.instance]
        if missing:
            path.append(str(missing[0]))
            message = "field required"
    raise PayloadValidationError(".".join(path), message)


#: checks a payload against a task's JSON schema (also used for events and validated waits)
validate_payload = _validate


def checked_schema(schema: Any, field: str) -> dict[str, Any]:
    """``schema`` if it is a JSON Schema object; ``UserError`` naming ``field`` if not."""
    if not isinstance(schema, dict):
        raise UserError(f"{field}: must be a JSON Schema object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise UserError(f"{field}: not a valid JSON Schema ({exc.message})") from None
    return schema


def schema_error(
    schema: dict[str, Any] | None, value: Any, root: str = "payload"
) -> PayloadValidationError | None:
    """What :func:`validate_payload` would raise, or ``None``."""
    try:
        _validate(schema, value, root)
    except PayloadValidationError as exc:
        return exc
    return None
