"""Runs, their attempts and their history, one module per concern.

- ``transitions``: every statement that writes a run's or an attempt's status,
  each guard rendered from ``ALLOWED_FROM``; the one-statement PostgreSQL
  variants (claim, report-and-claim, a trigger handed to a parked claim) sit
  beside the general operation each replaces.
- ``insert``: new runs (their first status is set at creation, not moved to).
- ``history``: the ``run_events`` rows; ``leases``: claim candidates, worker
  slots and leases; ``delayed``: DELAYED runs and debounce; ``queries``: reads.

Callers use the package (``from triggerfish.store import runs``): every public
name of these modules is here.
"""

from triggerfish.store.runs.delayed import (
    due_delayed,
    find_debounced,
    past_ttl,
    reschedule_delayed,
    update_debounced,
)
from triggerfish.store.runs.history import list_events
from triggerfish.store.runs.insert import (
    idempotent_run,
    insert_queued_run,
    insert_queued_run_alone,
    insert_run,
    insert_runs,
    run_by_request_key,
)
from triggerfish.store.runs.leases import (
    ACTIVE,
    active_counts,
    active_total,
    expired_leases,
    extend_leases,
    held_by_worker,
    next_available_at,
    queued_candidates,
    status_in,
)
from triggerfish.store.runs.queries import (
    add_tags,
    attempt_by_id,
    attempt_from_row,
    attempt_in_environment,
    attempt_version,
    clear_idempotency_key,
    count_matching,
    find_by_idempotency_key,
    find_idempotent,
    find_idempotent_many,
    get,
    get_by_id,
    get_for_update,
    list_attempts,
    oldest_waiting,
    page,
    run_from_row,
    run_of_attempt,
    status_counts,
    tags_of,
)
from triggerfish.store.runs.transitions import (
    Claim,
    Fetch,
    HandOff,
    SimpleClaim,
    Successes,
    claim_unconstrained,
    claim_unconstrained_after,
    in_transaction,
    insert_and_hand_off_alone,
    mark_dequeued,
    transition,
    transition_many,
    transition_values,
    update_attempt,
    update_attempts,
)

__all__ = [
    "ACTIVE",
    "Claim",
    "Fetch",
    "HandOff",
    "SimpleClaim",
    "Successes",
    "active_counts",
    "active_total",
    "add_tags",
    "attempt_by_id",
    "attempt_from_row",
    "attempt_in_environment",
    "attempt_version",
    "claim_unconstrained",
    "claim_unconstrained_after",
    "clear_idempotency_key",
    "count_matching",
    "due_delayed",
    "expired_leases",
    "extend_leases",
    "find_by_idempotency_key",
    "find_debounced",
    "find_idempotent",
    "find_idempotent_many",
    "get",
    "get_by_id",
    "get_for_update",
    "held_by_worker",
    "idempotent_run",
    "in_transaction",
    "insert_and_hand_off_alone",
    "insert_queued_run",
    "insert_queued_run_alone",
    "insert_run",
    "insert_runs",
    "list_attempts",
    "list_events",
    "mark_dequeued",
    "next_available_at",
    "oldest_waiting",
    "page",
    "past_ttl",
    "queued_candidates",
    "reschedule_delayed",
    "run_by_request_key",
    "run_from_row",
    "run_of_attempt",
    "status_counts",
    "status_in",
    "tags_of",
    "transition",
    "transition_many",
    "transition_values",
    "update_attempt",
    "update_attempts",
    "update_debounced",
]
