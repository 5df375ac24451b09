"""Random sends of events (names, ids, payloads, repeats) and runs waiting for them
by id, by payload match, or both, against the real store. Whatever the order, a
wait resumes once, with the first accepted event that is addressed to it (its id,
or any id when it names none) and matches its ``match``; an event sent before a
wait by id began still completes it; a repeat of a name and id resolves nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from tests.support.machines import StoreMachine, run_machine_on
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.resources import ManualClock
from triggerfish.engine.waitpoints import WaitSpec
from triggerfish.errors import PayloadValidationError
from triggerfish.store import journal as journal_store

MANIFEST = {
    "id": "t",
    "retry": {"max_attempts": 1},
    "machine": "micro",
    "queue": {"name": "task/t", "concurrency_limit": None},
}
NAMES = st.sampled_from(["a", "b"])
IDS = st.sampled_from([None, "x", "y"])
FIELDS = st.sampled_from([None, 1, 2])
#: a validated wait takes only payloads with f == 1
SCHEMA = {"type": "object", "properties": {"f": {"const": 1}}, "required": ["f"]}


class EventWaits(StoreMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_000_000.0)
        self.engine = Engine.create(ServerSettings(database_url=self.db_url), clock=self.clock)
        self.run(self.engine.start(background=False))
        self.run(self.engine.environments.bootstrap())
        self.env_id = self.run(self.engine.environments.by_slug("dev")).id
        self.worker = self.run(
            self.engine.workers.register(
                self.env_id, version="v1", name="w", concurrency=100, tasks=[MANIFEST]
            )
        )
        self.sent: dict[tuple[str, str], dict[str, Any]] = {}  # (name, id) -> first payload
        # run -> (name, id, match, validated)
        self.waits: dict[str, tuple[str, str | None, dict[str, Any], bool]] = {}
        self.expected: dict[str, str | None] = {}  # run -> id of the event that resumes it
        self.counter = 0

    def teardown(self) -> None:
        self.run(self.engine.close())
        self.release_store()

    @staticmethod
    def _matches(flt: dict[str, Any], payload: dict[str, Any]) -> bool:
        return all(payload.get(k) == v for k, v in flt.items())

    @staticmethod
    def _takes(match: dict[str, Any], validated: bool, payload: dict[str, Any]) -> bool:
        return EventWaits._matches(match, payload) and (not validated or payload["f"] == 1)

    @rule(name=NAMES, event_id=IDS, field=FIELDS, validated=st.booleans())
    def a_run_waits(
        self, name: str, event_id: str | None, field: int | None, validated: bool
    ) -> None:
        match = {} if field is None else {"f": field}
        run_id = self.run(self.engine.enqueue.trigger(self.env_id, TriggerRequest("t", {}))).id
        rows = self.run(self.engine.dequeue.claim(self.worker, 100))
        [row] = [r for r in rows if r.id == run_id]
        self.run(self.engine.attempts.start(row.id, row.claimed_attempt_id))
        spec = WaitSpec(
            "event",
            event_name=name,
            event_filter=match,
            event_id=event_id,
            schema=SCHEMA if validated else None,
        )
        answer = self.run(
            self.engine.waitpoints.wait_from_task(
                self.env_id,
                run_id,
                row.claimed_attempt_id,
                seq=0,
                kind="event.wait",
                name=name,
                spec=spec,
            )
        )
        self.waits[run_id] = (name, event_id, match, validated)
        earlier = self.sent.get((name, event_id or ""))
        if event_id is not None and earlier is not None and self._takes(match, validated, earlier):
            assert answer["status"] == "resolved"
            assert answer["result"]["output"]["id"] == event_id
            self.expected[run_id] = event_id
        else:
            assert answer["status"] == "suspended"
            self.expected[run_id] = None

    @rule(name=NAMES, event_id=IDS, field=st.sampled_from([1, 2]))
    def an_event_is_sent(self, name: str, event_id: str | None, field: int) -> None:
        payload = {"f": field}
        open_ = [
            (run_id, wait) for run_id, wait in self.waits.items() if self.expected[run_id] is None
        ]
        refuses = (
            event_id is not None
            and (name, event_id) not in self.sent
            and any(
                (wname, wid) == (name, event_id) and self._matches(match, payload) and validated
                for _, (wname, wid, match, validated) in open_
            )
            and field != 1
        )
        try:
            sent = self.run(self.engine.events.send(self.env_id, name, payload, event_id))
        except PayloadValidationError as exc:
            assert refuses and exc.field == "payload.f"
            return
        assert not refuses
        key = (name, sent.id)
        if key in self.sent:
            assert sent.is_cached and sent.waits_resolved == 0
            return
        self.sent[key] = payload
        resolved = 0
        for run_id, (wname, wid, match, validated) in open_:
            if wname != name:
                continue
            if wid is not None and wid != sent.id:
                continue
            if self._takes(match, validated, payload):
                self.expected[run_id] = sent.id
                resolved += 1
        assert sent.waits_resolved == resolved

    @invariant()
    def every_wait_holds_the_event_addressed_to_it(self) -> None:
        async def read() -> dict[str, Any]:
            async with self.engine.res.db.read() as conn:
                return {r: await journal_store.entry(conn, r, 0) for r in self.waits}

        for run_id, entry in self.run(read()).items():
            want = self.expected[run_id]
            if want is None:
                assert entry.status == "PENDING"
            else:
                assert entry.status == "OK" and entry.result["output"]["id"] == want


SETTINGS = settings(
    max_examples=4,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_event_waits_sqlite() -> None:
    run_machine_on(EventWaits, "sqlite", SETTINGS)


def test_event_waits_postgresql(pg_template: str) -> None:
    run_machine_on(EventWaits, "postgresql", SETTINGS, pg_template)
