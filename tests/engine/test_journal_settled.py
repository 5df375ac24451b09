"""A settled journal entry (OK or ERROR) is never changed by a write that
arrives late: one sent to a server that hung and was relayed through another
meanwhile. A replay trusts the settled outcome and never runs the step again,
so turning it back into RETRYING would run a finished step twice.

Every path that writes an entry is driven: the one-statement write of a step
(PostgreSQL), the guarded write inside a caller's transaction, and the guard
then upsert of SQLite; a late write is accepted (the attempt is current) and
leaves the entry as it was.
"""

from __future__ import annotations

from typing import Any

from tests.engine.test_runs_engine import manifest, setup
from triggerfish._domain.records import JournalRecord
from triggerfish._domain.states import JournalStatus
from triggerfish._domain.times import to_datetime
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.engine.journal import JournalEntry
from triggerfish.store import journal as journal_store

RETRYING = JournalEntry(
    seq=0, kind="step", name="a", status=JournalStatus.RETRYING, error={"m": "x"}, failures=1
)


async def _claimed(engine: Engine) -> tuple[str, str, str]:
    env_id, worker = await setup(engine, manifest("t"))
    created = await engine.enqueue.trigger(env_id, TriggerRequest("t", {}))
    [claimed] = await engine.dequeue.claim(worker, 1, start=1)
    assert claimed.current_attempt_id is not None
    return env_id, created.id, claimed.current_attempt_id


async def _entry(engine: Engine, run_id: str) -> JournalRecord:
    async with engine.res.db.read() as conn:
        entry = await journal_store.entry(conn, run_id, 0)
    assert entry is not None
    return entry


async def _settle_then_write_late(engine: Engine, settled: JournalEntry) -> JournalRecord:
    env_id, run_id, attempt_id = await _claimed(engine)
    for entry in (RETRYING, settled, RETRYING):
        await engine.journal.record(run_id, attempt_id, entry, env_id)
    return await _entry(engine, run_id)


async def test_a_late_retrying_write_leaves_an_ok_step_ok(engine: Engine) -> None:
    ok = JournalEntry(seq=0, kind="step", name="a", status=JournalStatus.OK, result={"n": 1})
    stored = await _settle_then_write_late(engine, ok)
    assert (stored.status, stored.result, stored.error) == (JournalStatus.OK, {"n": 1}, None)


async def test_a_late_retrying_write_leaves_a_failed_step_failed(engine: Engine) -> None:
    failed = JournalEntry(
        seq=0, kind="step", name="a", status=JournalStatus.ERROR, error={"m": "y"}, failures=3
    )
    stored = await _settle_then_write_late(engine, failed)
    assert (stored.status, stored.error, stored.failures) == (JournalStatus.ERROR, {"m": "y"}, 3)


async def test_a_late_write_in_the_callers_transaction_is_accepted_and_changes_nothing(
    engine: Engine,
) -> None:
    env_id, run_id, attempt_id = await _claimed(engine)
    ok = JournalEntry(seq=0, kind="step", name="a", status=JournalStatus.OK, result=7)
    written: list[bool] = []
    for entry in (ok, RETRYING):
        now = to_datetime(engine.res.clock.now())
        async with engine.res.db.write() as conn:
            written.append(
                await engine.journal.write_guarded_in(conn, run_id, attempt_id, entry, env_id, now)
            )
    stored = await _entry(engine, run_id)
    assert written == [True, True]
    assert (stored.status, stored.result) == (JournalStatus.OK, 7)


async def test_an_unsettled_entry_still_takes_each_new_try(engine: Engine) -> None:
    env_id, run_id, attempt_id = await _claimed(engine)
    tries: list[Any] = []
    for failures in (1, 2):
        entry = JournalEntry(
            seq=0,
            kind="step",
            name="a",
            status=JournalStatus.RETRYING,
            error={"try": failures},
            failures=failures,
        )
        await engine.journal.record(run_id, attempt_id, entry, env_id)
        stored = await _entry(engine, run_id)
        tries.append((stored.status, stored.failures, stored.error))
    assert tries == [
        (JournalStatus.RETRYING, 1, {"try": 1}),
        (JournalStatus.RETRYING, 2, {"try": 2}),
    ]
