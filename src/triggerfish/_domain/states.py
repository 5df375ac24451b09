"""Run, attempt and journal statuses; which run moves are legal; what each failure leads to.

Statuses carry Trigger.dev's public names (API version 2025-07-16). The store
changes a run's status with guarded ``UPDATE``s whose ``WHERE status IN
(ALLOWED_FROM[to])`` makes stale or duplicate reports harmless: they match no row.
"""

from __future__ import annotations

import enum
from typing import Literal, assert_never


class RunStatus(enum.StrEnum):
    #: no worker of the run's locked version is online
    PENDING_VERSION = "PENDING_VERSION"
    #: waiting for its ``delay`` to pass
    DELAYED = "DELAYED"
    #: ready to be claimed (possibly not before ``available_at``: retry backoff)
    QUEUED = "QUEUED"
    #: claimed by a worker, attempt created, not started yet
    DEQUEUED = "DEQUEUED"
    #: an attempt is running in a worker's child process
    EXECUTING = "EXECUTING"
    #: suspended on a waitpoint; uses no worker
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    #: the task process or its worker died and no attempts remain
    CRASHED = "CRASHED"
    #: the platform could not run it (not the task's fault)
    SYSTEM_FAILURE = "SYSTEM_FAILURE"
    #: its TTL passed before it started
    EXPIRED = "EXPIRED"
    #: it ran past ``max_duration``
    TIMED_OUT = "TIMED_OUT"


class AttemptStatus(enum.StrEnum):
    """An attempt's status: it follows its run's transitions (see ``ATTEMPT_FOR``)."""

    #: claimed, not started yet (its run is DEQUEUED)
    PENDING = "PENDING"
    EXECUTING = "EXECUTING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CRASHED = "CRASHED"
    CANCELED = "CANCELED"
    #: handed back unfinished (a graceful shutdown): its run is QUEUED again
    RELEASED = "RELEASED"
    #: its run waits on a waitpoint; the run's next attempt resumes it
    SUSPENDED = "SUSPENDED"


class JournalStatus(enum.StrEnum):
    """The status of one entry of a run's journal (a step, a wait, a child run)."""

    #: recorded before its outcome is known (a wait, a child run)
    PENDING = "PENDING"
    OK = "OK"
    ERROR = "ERROR"
    #: the step failed and will run again
    RETRYING = "RETRYING"


#: journal entries whose outcome is settled: a replay returns or raises it and never
#: runs the step again, so no later write may change them
SETTLED_JOURNAL: frozenset[JournalStatus] = frozenset({JournalStatus.OK, JournalStatus.ERROR})

S = RunStatus

FINAL: frozenset[RunStatus] = frozenset(
    {S.COMPLETED, S.FAILED, S.CANCELED, S.CRASHED, S.SYSTEM_FAILURE, S.EXPIRED, S.TIMED_OUT}
)
#: statuses in which a run holds a worker slot (and a lease that heartbeats renew)
ACTIVE: frozenset[RunStatus] = frozenset({S.DEQUEUED, S.EXECUTING})
CANCELABLE: frozenset[RunStatus] = frozenset(
    {S.PENDING_VERSION, S.DELAYED, S.QUEUED, S.DEQUEUED, S.EXECUTING, S.WAITING}
)

ALLOWED_FROM: dict[RunStatus, frozenset[RunStatus]] = {
    S.PENDING_VERSION: frozenset({S.QUEUED}),
    S.DELAYED: frozenset(),  # only at creation
    # from DEQUEUED/EXECUTING: retry, heartbeat reclaim or graceful release
    S.QUEUED: frozenset({S.PENDING_VERSION, S.DELAYED, S.DEQUEUED, S.EXECUTING, S.WAITING}),
    S.DEQUEUED: frozenset({S.QUEUED}),
    S.EXECUTING: frozenset({S.DEQUEUED}),
    S.WAITING: frozenset({S.EXECUTING}),
    S.COMPLETED: frozenset({S.EXECUTING}),
    S.FAILED: frozenset({S.DEQUEUED, S.EXECUTING}),
    S.CRASHED: frozenset({S.DEQUEUED, S.EXECUTING}),
    S.TIMED_OUT: frozenset({S.DEQUEUED, S.EXECUTING}),
    S.SYSTEM_FAILURE: frozenset({S.QUEUED, S.DEQUEUED, S.EXECUTING, S.WAITING}),
    S.CANCELED: CANCELABLE,
    S.EXPIRED: frozenset({S.PENDING_VERSION, S.DELAYED, S.QUEUED}),
}


#: the status a run's claim gives its new attempt
ATTEMPT_FOR: dict[RunStatus, AttemptStatus] = {
    S.DEQUEUED: AttemptStatus.PENDING,
    S.EXECUTING: AttemptStatus.EXECUTING,
}


#: attempt statuses after which the attempt writes nothing more (a suspended
#: attempt may still flush what it wrote before the wait)
ATTEMPT_ENDED: frozenset[AttemptStatus] = frozenset(
    {
        AttemptStatus.COMPLETED,
        AttemptStatus.FAILED,
        AttemptStatus.CRASHED,
        AttemptStatus.TIMED_OUT,
        AttemptStatus.CANCELED,
        AttemptStatus.RELEASED,
    }
)


class WaitpointStatus(enum.StrEnum):
    """Whether a waitpoint (a token, a duration, a child run, an event) resolved."""

    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    TIMED_OUT = "TIMED_OUT"


def is_final(status: RunStatus) -> bool:
    return status in FINAL


def can_move(frm: RunStatus, to: RunStatus) -> bool:
    return frm in ALLOWED_FROM[to]


FailureKind = Literal["USER", "ABORT", "OOM", "TIMEOUT", "CRASH", "CANCELED"]


def final_status_for(kind: FailureKind) -> RunStatus:
    """The status a run ends in when an attempt fails this way and no retry follows."""
    match kind:
        case "USER" | "ABORT" | "OOM":
            return S.FAILED
        case "TIMEOUT":
            return S.TIMED_OUT
        case "CRASH":
            return S.CRASHED
        case "CANCELED":
            return S.CANCELED
        case _:
            assert_never(kind)


def attempt_status_for(kind: FailureKind) -> AttemptStatus:
    """The status an attempt ends in when it fails this way: its run's final
    status for that failure, by the same name."""
    return AttemptStatus(final_status_for(kind).value)


def is_retryable(kind: FailureKind) -> bool:
    """Whether this kind of failure may be retried under the task's policy."""
    match kind:
        case "USER" | "OOM" | "CRASH":
            return True
        case "ABORT" | "TIMEOUT" | "CANCELED":
            return False
        case _:
            assert_never(kind)
