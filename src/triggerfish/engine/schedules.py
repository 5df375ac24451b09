"""Cron schedules: declarative (synced from workers' task manifests) and imperative
(created over the API), and the sweep that turns due slots into runs.

Firing a slot, on any number of server replicas at once:

1. read the schedules whose ``next_fire_at`` has passed;
2. pick the slot to run (``next_fire_at``, or the latest missed slot: see
   ``schedule_missed_slots``) and trigger the task through the normal enqueue
   path with the idempotency key ``schedule:<id>:<slot>``: a replica that
   triggers the same slot again gets the same run back;
3. move the schedule to its next slot with ``UPDATE … WHERE next_fire_at =
   :slot_read``; a replica that lost the race matches no row.

Triggering before claiming means a crash between the two steps is repaired by
the next sweep (same key, same run), so each slot fires exactly once.

Example (tests drive it with a manual clock)::

    info = await engine.schedules.create(env_id, ScheduleInput("sync", "*/15 * * * *"))
    clock.advance(minutes=15)
    await engine.schedules.fire_due()
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from triggerfish._cron import CronError, CronSpec, parse_cron, timezone_names
from triggerfish._domain.records import ScheduleRecord
from triggerfish._domain.times import iso_from_epoch, to_datetime
from triggerfish._ids import new_id
from triggerfish.engine.enqueue import Enqueue, TriggerRequest, TriggerResult
from triggerfish.engine.failure_log import FailureLog
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import (
    InvalidSchedule,
    ScheduleNotFound,
    StoreUnavailable,
    TaskNotFound,
    UserError,
)
from triggerfish.store import schedules as schedule_store
from triggerfish.store import workers as worker_store
from triggerfish.store.errors import DuplicateKey

log = logging.getLogger(__name__)

#: schedules fired per sweep; the rest wait for the next one
SWEEP_BATCH = 200
#: how many upcoming slot times a scheduled run's payload lists
UPCOMING_IN_PAYLOAD = 5


class ScheduleType(StrEnum):
    DECLARATIVE = "DECLARATIVE"  #: from ``@schedules.task(cron=...)``; follows the code
    IMPERATIVE = "IMPERATIVE"  #: created over the API; lives until deleted


@dataclass
class ScheduleInput:
    """What ``schedules.create`` / ``update`` ask for, in engine terms."""

    task_id: str
    cron: str
    timezone: str | None = None
    external_id: str | None = None
    deduplication_key: str | None = None


@dataclass(frozen=True)
class ScheduleChanges:
    """What ``schedules.update`` changes: the fields in ``given`` (a field not
    given keeps its stored value; ``timezone`` given as None is UTC)."""

    task_id: str | None = None
    cron: str | None = None
    timezone: str | None = None
    external_id: str | None = None
    given: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        task_id: str | None = None,
        cron: str | None = None,
        **optional: str | None,
    ) -> ScheduleChanges:
        """The changes named: ``ScheduleChanges.of(cron="0 9 * * *", timezone=None)``."""
        unknown = set(optional) - {"timezone", "external_id"}
        if unknown:
            raise TypeError(f"unknown schedule fields: {sorted(unknown)}")
        given = {*optional, *(["task_id"] if task_id else []), *(["cron"] if cron else [])}
        return cls(
            task_id=task_id,
            cron=cron,
            timezone=optional.get("timezone"),
            external_id=optional.get("external_id"),
            given=frozenset(given),
        )

    @classmethod
    def replacing(cls, inp: ScheduleInput) -> ScheduleChanges:
        """Every field as ``inp`` has it (a form that shows them all)."""
        return cls.of(
            task_id=inp.task_id,
            cron=inp.cron,
            timezone=inp.timezone,
            external_id=inp.external_id,
        )

    def applied_to(self, row: ScheduleRecord) -> ScheduleInput:
        def pick(name: str, stored: Any) -> Any:
            return getattr(self, name) if name in self.given else stored

        return ScheduleInput(
            task_id=pick("task_id", row.task_identifier) or row.task_identifier,
            cron=pick("cron", row.cron) or row.cron,
            timezone=pick("timezone", row.timezone),
            external_id=pick("external_id", row.external_id),
        )


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as callers see it: the stored row plus what is derived from it."""

    id: str
    type: ScheduleType
    task_id: str
    active: bool
    cron: str
    description: str
    timezone: str
    external_id: str | None
    deduplication_key: str | None
    next_run: float | None
    last_run: float | None
    created_at: datetime
    updated_at: datetime


def slot_key(schedule_id: str, slot: float) -> str:
    """The idempotency key of a schedule's run for one slot: one run per slot."""
    return f"{run_key_prefix(schedule_id)}{math.floor(slot)}"


def run_key_prefix(schedule_id: str) -> str:
    """What the idempotency keys of every run of this schedule begin with."""
    return f"schedule:{schedule_id}:"


def schedule_id_of(idempotency_key: str | None) -> str | None:
    """The schedule that started a run, read back from the run's idempotency key."""
    if not idempotency_key or not idempotency_key.startswith("schedule:"):
        return None
    _, schedule_id, _slot = idempotency_key.split(":", 2)
    return schedule_id


class Schedules:
    def __init__(self, res: EngineResources, enqueue: Enqueue) -> None:
        self.res = res
        self.enqueue = enqueue
        #: sweeps in which schedules failed to fire, logged sparingly: a schedule
        #: that fails does so on every sweep (twice a second) until it is fixed
        self._failures = FailureLog(log, "firing schedules")
        if res.settings.schedule_seconds_field:
            log.warning("schedule_seconds_field is on: 6-field cron accepted (meant for tests)")

    # -- validation ----------------------------------------------------------------

    def spec(self, cron: str, timezone: str | None, *, where: str = "") -> CronSpec:
        """Parse ``cron`` in ``timezone``, raising ``InvalidSchedule`` that names the field."""
        try:
            return parse_cron(
                cron,
                timezone or "UTC",
                allow_seconds=self.res.settings.schedule_seconds_field,
            )
        except CronError as exc:
            field = "timezone" if "time zone" in str(exc) else "cron"
            raise InvalidSchedule(f"{where}{field}: {exc}") from None

    @staticmethod
    def timezones(*, exclude_utc: bool = False) -> list[str]:
        """Every IANA time zone a schedule may use."""
        return [z for z in timezone_names() if not (exclude_utc and z == "UTC")]

    async def _check_scheduled_task(self, conn: AsyncConnection, env_id: str, task_id: str) -> None:
        manifest = await worker_store.latest_manifest(conn, env_id, task_id)
        if manifest is None:
            raise TaskNotFound(task_id, await worker_store.known_task_ids(conn, env_id))
        if not isinstance(manifest.get("schedule"), dict):
            raise InvalidSchedule(
                f"task: {task_id!r} is not a scheduled task; declare it with "
                f'@schedules.task(id="{task_id}") to give it schedules'
            )

    # -- imperative schedules ------------------------------------------------------

    async def create(self, env_id: str, inp: ScheduleInput) -> ScheduleInfo:
        """Create a schedule, or update the one with the same deduplication key."""
        spec = self.spec(inp.cron, inp.timezone)
        for _ in range(2):  # a concurrent create with the same key: update its row instead
            try:
                return await self._create_or_update(env_id, inp, spec)
            except DuplicateKey:
                if not inp.deduplication_key:
                    raise
        raise RuntimeError("deduplication key race could not be resolved; retry the call")

    async def _create_or_update(
        self, env_id: str, inp: ScheduleInput, spec: CronSpec
    ) -> ScheduleInfo:
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            await self._check_scheduled_task(conn, env_id, inp.task_id)
            if inp.deduplication_key:
                row = await schedule_store.by_deduplication_key(conn, env_id, inp.deduplication_key)
                if row is not None:
                    return self._info(await self._apply(conn, row, inp, spec, now))
            schedule_id = new_id("sched", now)
            schedule = ScheduleRecord(
                id=schedule_id,
                environment_id=env_id,
                task_identifier=inp.task_id,
                type=ScheduleType.IMPERATIVE.value,
                cron=spec.expression,
                timezone=spec.timezone,
                external_id=inp.external_id,
                deduplication_key=inp.deduplication_key,
                active=True,
                next_fire_at=spec.next_after(now),
                last_fired_at=None,
                created_at=to_datetime(now),
                updated_at=to_datetime(now),
            )
            await schedule_store.insert_schedule(conn, schedule)
            row = await schedule_store.get_schedule(conn, env_id, schedule_id)
        assert row is not None
        return self._info(row)

    async def update(self, env_id: str, ref: str, changes: ScheduleChanges) -> ScheduleInfo:
        """Change an imperative schedule's task, cron, time zone or external id: only
        the fields ``changes`` names; the others keep their values."""
        async with self.res.db.write() as conn:
            row = await self._imperative(conn, env_id, ref, "updated")
            inp = changes.applied_to(row)
            spec = self.spec(inp.cron, inp.timezone)
            await self._check_scheduled_task(conn, env_id, inp.task_id)
            row = await self._apply(conn, row, inp, spec, self.res.clock.now())
        return self._info(row)

    async def trigger_now(self, env_id: str, ref: str) -> TriggerResult:
        """Run a schedule's task now, by hand, with the payload a slot at this moment
        would get; the timetable (next and last run) stays as it is."""
        now = self.res.clock.now()
        async with self.res.db.read() as conn:
            row = await schedule_store.get_schedule(conn, env_id, ref)
        if row is None:
            raise ScheduleNotFound(ref)
        spec = self.spec(row.cron, row.timezone)
        request = TriggerRequest(
            task_id=row.task_identifier,
            payload=self.payload(row, spec, now),
            schedule_id=row.id,
            tags=["manual"],
        )
        return await self.enqueue.trigger(env_id, request)

    async def _apply(
        self,
        conn: AsyncConnection,
        row: ScheduleRecord,
        inp: ScheduleInput,
        spec: CronSpec,
        now: float,
    ) -> ScheduleRecord:
        values: dict[str, Any] = {
            "task_identifier": inp.task_id,
            "cron": spec.expression,
            "timezone": spec.timezone,
            "external_id": inp.external_id,
            "updated_at": to_datetime(now),
        }
        if (row.cron, row.timezone) != (spec.expression, spec.timezone) and row.active:
            # a new timetable starts from now; an unchanged one keeps its next slot
            values["next_fire_at"] = spec.next_after(now)
        updated = await schedule_store.update_schedule(conn, row.id, values)
        assert updated is not None
        return updated

    async def _imperative(
        self, conn: AsyncConnection, env_id: str, ref: str, verb: str
    ) -> ScheduleRecord:
        row = await schedule_store.get_schedule(conn, env_id, ref)
        if row is None:
            raise ScheduleNotFound(ref)
        if row.type == ScheduleType.DECLARATIVE:
            raise InvalidSchedule(
                f"schedule {row.id} of task {row.task_identifier!r} is declarative and cannot "
                f"be {verb} over the API; change or remove the cron in the task's "
                "@schedules.task(...) declaration"
            )
        return row

    async def retrieve(self, env_id: str, ref: str) -> ScheduleInfo:
        async with self.res.db.read() as conn:
            row = await schedule_store.get_schedule(conn, env_id, ref)
        if row is None:
            raise ScheduleNotFound(ref)
        return self._info(row)

    async def page(
        self, env_id: str, *, page: int, per_page: int, task_id: str | None = None
    ) -> tuple[list[ScheduleInfo], int]:
        """``(schedules on that 1-based page, total count)``, oldest first."""
        async with self.res.db.read() as conn:
            rows, total = await schedule_store.page(
                conn, env_id, offset=(page - 1) * per_page, limit=per_page, task_id=task_id
            )
        return [self._info(r) for r in rows], total

    async def delete(self, env_id: str, ref: str) -> str:
        async with self.res.db.write() as conn:
            row = await self._imperative(conn, env_id, ref, "deleted")
            await schedule_store.delete_schedule(conn, row.id)
        return str(row.id)

    async def activate(self, env_id: str, ref: str) -> ScheduleInfo:
        """Resume firing from the next slot after now (slots while inactive never run)."""
        return await self._set_active(env_id, ref, True)

    async def deactivate(self, env_id: str, ref: str) -> ScheduleInfo:
        return await self._set_active(env_id, ref, False)

    async def _set_active(self, env_id: str, ref: str, active: bool) -> ScheduleInfo:
        now = self.res.clock.now()
        async with self.res.db.write() as conn:
            row = await schedule_store.get_schedule(conn, env_id, ref)
            if row is None:
                raise ScheduleNotFound(ref)
            if bool(row.active) != active:
                nxt = self.spec(row.cron, row.timezone).next_after(now) if active else None
                row = await schedule_store.update_schedule(
                    conn,
                    row.id,
                    {"active": active, "next_fire_at": nxt, "updated_at": to_datetime(now)},
                )
        assert row is not None
        return self._info(row)

    # -- declarative schedules -----------------------------------------------------

    def declared(self, tasks: list[dict[str, Any]]) -> dict[str, CronSpec]:
        """``task id -> cron`` of the manifests that declare one; invalid ones raise."""
        found: dict[str, CronSpec] = {}
        for manifest in tasks:
            schedule = manifest.get("schedule")
            if isinstance(schedule, dict) and schedule.get("cron"):
                found[manifest["id"]] = self.spec(
                    schedule["cron"],
                    schedule.get("timezone"),
                    where=f"task {manifest['id']!r}: ",
                )
        return found

    async def sync_declarative(
        self,
        conn: AsyncConnection,
        env_id: str,
        tasks: list[dict[str, Any]],
        declared: dict[str, CronSpec],
        now: float,
    ) -> None:
        """Make the environment's declarative schedules match a registering worker's code.

        A declared cron creates or updates its task's schedule (an unchanged one
        keeps its next slot, so a restart neither skips nor repeats one). A task
        the worker declares without a cron loses its schedule. A schedule whose
        task is in no online worker's code any more is removed too.
        """
        existing = {
            r.task_identifier: r for r in await schedule_store.declarative_schedules(conn, env_id)
        }
        for task_id, spec in declared.items():
            row = existing.get(task_id)
            if row is None:
                await schedule_store.insert_schedule(
                    conn,
                    ScheduleRecord(
                        id=new_id("sched", now),
                        environment_id=env_id,
                        task_identifier=task_id,
                        type=ScheduleType.DECLARATIVE.value,
                        cron=spec.expression,
                        timezone=spec.timezone,
                        external_id=None,
                        deduplication_key=None,
                        active=True,
                        next_fire_at=spec.next_after(now),
                        last_fired_at=None,
                        created_at=to_datetime(now),
                        updated_at=to_datetime(now),
                    ),
                )
            elif (row.cron, row.timezone) != (spec.expression, spec.timezone):
                await schedule_store.update_schedule(
                    conn,
                    row.id,
                    {
                        "cron": spec.expression,
                        "timezone": spec.timezone,
                        "next_fire_at": spec.next_after(now) if row.active else None,
                        "updated_at": to_datetime(now),
                    },
                )
        mine = {m["id"] for m in tasks}
        stale = [t for t in existing if t not in declared]
        if not stale:
            return
        online = await worker_store.online_workers(
            conn, env_id, now - self.res.settings.heartbeat_timeout
        )
        elsewhere = {t for w in online for t in (w.tasks or [])}
        for task_id in stale:
            # another worker pool may serve tasks this worker does not load
            if task_id in mine or task_id not in elsewhere:
                await schedule_store.delete_schedule(conn, existing[task_id].id)

    # -- firing --------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Trigger every due slot once; returns how many new runs were created."""
        now = self.res.clock.now()
        async with self.res.db.read() as conn:
            rows = await schedule_store.due(conn, now, SWEEP_BATCH)
        # replicas sweeping together mostly take different schedules first
        random.shuffle(rows)
        fired = 0
        failed: list[tuple[str, Exception]] = []
        for row in rows:
            try:
                fired += await self._fire(row, now)
            except StoreUnavailable:
                # the others would fail the same way: the maintenance loop logs the outage once
                raise
            except Exception as exc:  # one broken schedule must not hold up the others
                failed.append((row.id, exc))
        if failed:
            first_id, first = failed[0]
            which = f"schedule {first_id}" + (f" and {len(failed) - 1} more" if failed[1:] else "")
            self._failures.failed(now, first, where=which)
        else:
            self._failures.succeeded(now)
        return fired

    def _slot_to_run(self, row: ScheduleRecord, spec: CronSpec, now: float) -> float | None:
        """The slot this sweep runs: the due one, or per policy the latest missed one."""
        assert row.next_fire_at is not None  # due() reads scheduled ones only
        slot = row.next_fire_at
        following = spec.next_after(slot)
        if following is not None and following <= now:
            # several slots passed (downtime): run only the latest, never a flood
            slot = spec.latest_at_or_before(now) or slot
        if (
            self.res.settings.schedule_missed_slots == "skip"
            and now - slot > self.res.settings.schedule_misfire_grace
        ):
            return None
        return slot

    async def _fire(self, row: ScheduleRecord, now: float) -> int:
        try:
            spec = self.spec(row.cron, row.timezone)
        except InvalidSchedule as exc:  # e.g. a zone dropped from the tz database
            log.error("schedule %s cannot fire and is deactivated: %s", row.id, exc)
            async with self.res.db.write() as conn:
                await schedule_store.update_schedule(
                    conn, row.id, {"active": False, "next_fire_at": None}
                )
            return 0
        expected_next = row.next_fire_at
        assert expected_next is not None  # due() reads scheduled ones only
        slot = self._slot_to_run(row, spec, now)
        created = 0
        if slot is not None:
            request = TriggerRequest(
                task_id=row.task_identifier,
                payload=self.payload(row, spec, slot),
                # one run per (schedule, slot), whichever replica gets here first
                idempotency_key=slot_key(row.id, slot),
                schedule_id=row.id,
            )
            try:
                result = await self.enqueue.trigger(row.environment_id, request)
                created = 0 if result.is_cached else 1
            except UserError as exc:  # retrying cannot help: skip this slot, keep the next
                log.warning("schedule %s: slot %s not run: %s", row.id, iso_from_epoch(slot), exc)
                slot = None
        async with self.res.db.write() as conn:
            await schedule_store.claim_slot(
                conn,
                row.id,
                expected_next=expected_next,
                fired_slot=slot if slot is not None else row.last_fired_at,
                new_next=spec.next_after(now),
                now=to_datetime(now),
            )
        return created

    @staticmethod
    def payload(row: ScheduleRecord, spec: CronSpec, slot: float) -> dict[str, Any]:
        """What the scheduled run receives (Trigger.dev's scheduled-task payload)."""
        payload: dict[str, Any] = {
            "scheduleId": row.id,
            "type": row.type,
            "timestamp": iso_from_epoch(slot),
            "timezone": row.timezone,
            "upcoming": [iso_from_epoch(t) for t in spec.upcoming(slot, UPCOMING_IN_PAYLOAD)],
        }
        if row.last_fired_at is not None:
            payload["lastTimestamp"] = iso_from_epoch(row.last_fired_at)
        if row.external_id is not None:
            payload["externalId"] = row.external_id
        return payload

    def _info(self, row: ScheduleRecord) -> ScheduleInfo:
        try:
            description = self.spec(row.cron, row.timezone).describe()
        except InvalidSchedule:
            description = row.cron
        return ScheduleInfo(
            id=row.id,
            type=ScheduleType(row.type),
            task_id=row.task_identifier,
            active=bool(row.active),
            cron=row.cron,
            description=description,
            timezone=row.timezone,
            external_id=row.external_id,
            deduplication_key=row.deduplication_key,
            next_run=row.next_fire_at,
            last_run=row.last_fired_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
