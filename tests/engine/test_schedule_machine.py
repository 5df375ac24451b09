"""Random interleavings of schedule creation, pauses, clock jumps (including across
DST changes and long downtimes) and sweeps by two replicas, against the real store.

Whatever the order: no slot runs twice, only real slots run and never early,
the most recent due slot of every active schedule has run after any sweep, and
each sweep adds at most one run per schedule (no flood)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from tests.support.machines import StoreMachine, run_machine_on
from triggerfish._cron import CronSpec, parse_cron
from triggerfish._domain.filters import RunFilter
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.engine.schedules import ScheduleInput

CRONS = ["*/20 * * * *", "30 2 * * *", "30 1 * * *", "0 * * * *", "15 9 * * MON-FRI"]
ZONES = ["UTC", "America/New_York", "Europe/London"]
# a day before New York's 2026 fall-back night, so clock jumps cross it
START = datetime(2026, 10, 31, 4, 0, tzinfo=UTC).timestamp()


def parse_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class ScheduleFiring(StoreMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(START)
        url = self.db_url
        self.replicas = [
            Engine.create(ServerSettings(database_url=url), clock=self.clock) for _ in range(2)
        ]
        for engine in self.replicas:
            self.run(engine.start(background=False))
        engine = self.replicas[0]
        self.run(engine.environments.bootstrap())
        self.env_id = self.run(engine.environments.by_slug("dev")).id
        manifest = {
            "id": "s",
            "retry": {"max_attempts": 1},
            "machine": "micro",
            "queue": {"name": "task/s", "concurrency_limit": None},
            "schedule": {"cron": None, "timezone": "UTC"},
        }
        self.run(
            engine.workers.register(
                self.env_id, version="v1", name="w", concurrency=1, tasks=[manifest]
            )
        )
        self.specs: dict[str, CronSpec] = {}
        self.active_since: dict[str, float | None] = {}  # None: deactivated

    def teardown(self) -> None:
        try:
            for engine in self.replicas:
                self.run(engine.close())
        finally:
            self.release_store()

    # -- helpers ---------------------------------------------------------------------

    def fired(self) -> list[tuple[str, float, float]]:
        """``(schedule id, slot, created at)`` of every run so far."""
        engine = self.replicas[0]

        async def read() -> list[tuple[str, float, float]]:
            out = []
            after = None
            while True:
                rows, _, more = await engine.runs.page(
                    self.env_id, RunFilter(task_ids=["s"]), size=100, after=after, before=None
                )
                for row in rows:
                    detail = await engine.runs.retrieve(self.env_id, row.id)
                    p = detail.run.payload
                    created = row.created_at.replace(tzinfo=UTC).timestamp()
                    out.append((p["scheduleId"], parse_ts(p["timestamp"]), created))
                if not more:
                    return out
                after = rows[-1].id

        return self.run(read())

    def _after_sweep(self, before: int) -> None:
        now = self.clock.now()
        fired = self.fired()
        # at most one new run per schedule per sweep round, whichever replicas swept
        assert len(fired) - before <= len(self.specs), "a sweep ran several slots"
        slots = {(s, t) for s, t, _ in fired}
        for sid, since in self.active_since.items():
            info = self.run(self.replicas[0].schedules.retrieve(self.env_id, sid))
            if since is None:
                assert info.next_run is None
                continue
            spec = self.specs[sid]
            assert info.next_run is not None and info.next_run > now
            assert info.next_run == spec.next_after(now)
            latest = spec.latest_at_or_before(now)
            if latest is not None and latest > since:
                assert (sid, latest) in slots, f"{sid}: latest slot {latest} did not run"

    # -- rules -----------------------------------------------------------------------

    @precondition(lambda self: len(self.specs) < 4)
    @rule(cron=st.sampled_from(CRONS), zone=st.sampled_from(ZONES))
    def create(self, cron: str, zone: str) -> None:
        info = self.run(
            self.replicas[0].schedules.create(self.env_id, ScheduleInput("s", cron, zone))
        )
        self.specs[info.id] = parse_cron(cron, zone)
        self.active_since[info.id] = self.clock.now()

    @rule(seconds=st.integers(min_value=1, max_value=5 * 3600))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule(which=st.integers(min_value=0, max_value=1))
    def sweep_one(self, which: int) -> None:
        before = len(self.fired())
        self.run(self.replicas[which].schedules.fire_due())
        self._after_sweep(before)

    @rule()
    def sweep_both_at_once(self) -> None:
        before = len(self.fired())

        async def both() -> None:
            await asyncio.gather(*(e.schedules.fire_due() for e in self.replicas))

        self.run(both())
        self._after_sweep(before)

    @precondition(lambda self: bool(self.specs))
    @rule(data=st.data())
    def toggle(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.specs)))
        engine = self.replicas[0]
        if self.active_since[sid] is None:
            self.run(engine.schedules.activate(self.env_id, sid))
            self.active_since[sid] = self.clock.now()
        else:
            self.run(engine.schedules.deactivate(self.env_id, sid))
            self.active_since[sid] = None

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def each_slot_runs_at_most_once_and_never_early(self) -> None:
        fired = self.fired()
        keys = [(s, t) for s, t, _ in fired]
        assert len(keys) == len(set(keys)), "a slot ran twice"
        for sid, slot, created in fired:
            spec = self.specs[sid]
            assert spec.latest_at_or_before(slot) == slot, f"{slot} is not a slot of {spec}"
            assert slot <= created + 1e-6, "a slot ran before its time"


SETTINGS = settings(
    max_examples=12,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_schedule_firing_sqlite() -> None:
    run_machine_on(ScheduleFiring, "sqlite", SETTINGS)


def test_schedule_firing_postgresql(pg_template: str) -> None:
    run_machine_on(ScheduleFiring, "postgresql", SETTINGS, pg_template)
