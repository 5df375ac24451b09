"""What the store hands the layers above it: one frozen record per stored thing.

Each record's fields are its table's columns, named alike and in the table's
order (``store/tables.py``), so the store builds one positionally from a row
(``RunRecord(*row)``) and a test checks the two agree. Statuses stay the
stored strings (``RunStatus`` and its siblings are ``StrEnum``s, so
``record.status == RunStatus.QUEUED`` holds); JSON columns are whatever the
JSON decoded to.

:class:`NewRun`, :class:`NewBatch`, :class:`NewWaitpoint` and
:class:`NewLogLine` go the other way: the columns of a row being created, as
the engine hands them to the store, which fills in the rest. Where the engine
sets every column of a row (an event, a user, a worker, a schedule, a journal
entry, an alert delivery, a webhook endpoint or delivery), it hands the store
that row's record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

R = TypeVar("R")


def positional(cls: type[R]) -> Callable[[Sequence[Any]], R]:
    """A builder of ``cls`` (a frozen, slotted record) from its fields' values in order.

    For the store's hottest reads (claimed and moved runs): it fills each slot
    directly, where a frozen dataclass's ``__init__`` calls ``object.__setattr__``
    once per field, which for a run's 47 fields costs about twice as much.
    """
    setters = [getattr(cls, f.name).__set__ for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    new = object.__new__

    def build(values: Sequence[Any]) -> R:
        record = new(cls)
        for set_slot, value in zip(setters, values, strict=True):
            set_slot(record, value)
        return record

    return build


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run, as ``runs`` stores it."""

    id: str
    environment_id: str
    task_identifier: str
    queue_name: str
    concurrency_key: str | None
    status: str
    previous_status: str | None
    payload: Any
    payload_type: str
    output: Any
    error: dict[str, Any] | None
    tags: list[str]
    run_metadata: dict[str, Any] | None
    idempotency_key: str | None
    idempotency_key_raw: str | None
    idempotency_key_expires_at: float | None
    machine: str
    max_attempts: int | None
    max_duration: float | None
    priority: float
    ttl: str | None
    attempt_count: int
    failure_count: int
    current_attempt_id: str | None
    worker_id: str | None
    locked_version: str | None
    available_at: float
    order_key: float
    lease_expires_at: float | None
    expires_at: float | None
    parent_run_id: str | None
    root_run_id: str | None
    batch_id: str | None
    batch_index: int | None
    debounce_key: str | None
    debounce_until: float | None
    replay_of: str | None
    schedule_id: str | None
    depth: int
    trigger_function: str
    is_test: bool
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    delayed_until: datetime | None
    expired_at: datetime | None
    #: the W3C ``traceparent`` its caller sent (None: the run starts a trace)
    trace_context: str | None
    #: the request key of the trigger call that made it (retries find the run by it)
    request_key: str | None

    @property
    def claimed_attempt_id(self) -> str:
        """The current attempt's id of a run that has been claimed."""
        if self.current_attempt_id is None:
            raise ValueError(f"run {self.id} has no attempt: it was never claimed")
        return self.current_attempt_id


@dataclass(frozen=True, slots=True)
class MovedRun:
    """What a set-based transition returns of each run it moved (it moves a run
    by its current attempt, so the run has one)."""

    id: str
    current_attempt_id: str
    previous_status: str | None
    parent_run_id: str | None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A registered worker, as ``workers`` stores it."""

    id: str
    environment_id: str
    version: str
    name: str
    concurrency: int
    #: the ids of the tasks it serves
    tasks: list[str]
    started_at: datetime
    last_seen_at: float
    stopped_at: datetime | None


# -- partial reads: the few columns a hot or sweeping query needs -------------------


@dataclass(frozen=True, slots=True)
class ClaimCandidate:
    """A queued run a worker could claim, as the claim's scan reads it."""

    id: str
    queue_name: str
    concurrency_key: str | None
    order_key: float


@dataclass(frozen=True, slots=True)
class DueDelayedRun:
    """A DELAYED run whose start has come (what queueing it needs)."""

    id: str
    environment_id: str
    queue_name: str
    concurrency_key: str | None
    priority: float


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    """A claimed or executing run whose worker stopped heartbeating."""

    id: str
    current_attempt_id: str
    status: str


@dataclass(frozen=True, slots=True)
class GuardedRun:
    """The run a journal write's guard locked: its attempt is current and executing."""

    id: str
    environment_id: str
    task_identifier: str


@dataclass(frozen=True, slots=True)
class LockedRun:
    """A run row locked while its waits resolve."""

    id: str
    status: str
    environment_id: str


@dataclass(frozen=True, slots=True)
class WaiterRef:
    """A run waiting on a waitpoint, at its journal position ``seq``."""

    run_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class TaskVersionRecord:
    """One version of a task as a worker registered it (``task_versions``)."""

    task_identifier: str
    version: str
    manifest: dict[str, Any]
    registered_at: datetime


@dataclass(frozen=True, slots=True)
class DueWaitpoint:
    """A pending waitpoint whose time has come (a duration ended, a timeout passed)."""

    id: str
    kind: str
    due_at: float


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of a run, as ``attempts`` stores it."""

    id: str
    run_id: str
    number: int
    status: str
    worker_id: str | None
    version: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One durable call of a run (a step, a wait, a child run), as ``run_journal`` stores it."""

    run_id: str
    seq: int
    kind: str
    name: str
    status: str
    result: Any
    error: dict[str, Any] | None
    #: the result lives in ``run_journal_blobs`` (too large to keep inline)
    result_blob: bool
    failures: int
    started_at: datetime
    finished_at: datetime | None
    #: a step's display fields (``name``, ``icon``, ``properties``), for the trace
    display: dict[str, Any] | None = None
    #: a step's failed tries, in order, kept after it succeeds:
    #: ``{"number": 1, "at": <epoch seconds>, "error": {"name", "message", "stack_trace"}}``
    tries: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class WaitpointRecord:
    """Something runs wait on (a duration, a token, a child run, an event)."""

    id: str
    environment_id: str
    kind: str
    status: str
    due_at: float | None
    output: Any
    output_is_error: bool
    idempotency_key: str | None
    idempotency_key_expires_at: float | None
    tags: list[str]
    callback_secret: str | None
    child_run_id: str | None
    event_name: str | None
    event_filter: dict[str, Any] | None
    owner_run_id: str | None
    created_at: datetime
    completed_at: datetime | None
    #: EVENT: only the event sent with this id completes it
    event_id: str | None = None
    #: TOKEN, EVENT: the JSON Schema what completes it must satisfy
    schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A cron schedule, as ``schedules`` stores it."""

    id: str
    environment_id: str
    task_identifier: str
    type: str
    cron: str
    timezone: str
    external_id: str | None
    deduplication_key: str | None
    active: bool
    next_fire_at: float | None
    last_fired_at: float | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class RunEventRecord:
    """One line of a run's history (``run_events``)."""

    id: int
    run_id: str
    from_status: str | None
    to_status: str
    attempt_id: str | None
    reason: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One change of the change feed (``changes``; kinds in ``store/changes.py``)."""

    id: int
    environment_id: str
    run_id: str | None
    batch_id: str | None
    kind: str
    data: Any
    created_at: float


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log line of a run (``run_logs``)."""

    id: int
    run_id: str
    attempt_number: int
    ts: float
    level: str
    stream: str
    message: str
    fields: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class NewLogLine:
    """A log line being stored; the store numbers it (``LogRecord.id``)."""

    run_id: str
    attempt_number: int
    ts: float
    level: str
    stream: str
    message: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewRun:
    """The columns of a run being created; the store fills in the rest.

    ``order_key`` is where a DELAYED run (or a batch's queued run) sorts; a run
    queued on its own gets its key from its fair bucket when stored.
    """

    id: str
    environment_id: str
    task_identifier: str
    queue_name: str
    concurrency_key: str | None
    status: str
    payload: Any
    payload_type: str
    tags: list[str]
    run_metadata: dict[str, Any] | None
    idempotency_key: str | None
    idempotency_key_raw: str | None
    idempotency_key_expires_at: float | None
    machine: str
    max_attempts: int | None
    max_duration: float | None
    priority: float
    ttl: str | None
    expires_at: float | None
    available_at: float
    trigger_function: str
    is_test: bool
    replay_of: str | None
    schedule_id: str | None
    debounce_key: str | None
    debounce_until: float | None
    created_at: datetime
    updated_at: datetime
    delayed_until: datetime | None
    batch_id: str | None = None
    batch_index: int | None = None
    order_key: float = 0.0
    trace_context: str | None = None
    #: the trigger call's request key: a retry of the call finds this run
    request_key: str | None = None


@dataclass(frozen=True, slots=True)
class NewBatch:
    """The columns of a batch being created; it starts unsealed, with no errors."""

    id: str
    environment_id: str
    run_count: int
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    request_key: str | None = None


@dataclass(frozen=True, slots=True)
class NewWaitpoint:
    """The columns of a waitpoint being created; those of other kinds stay None.

    A JSON column left None (``output``, ``event_filter``, ``schema``) is stored
    as SQL NULL, not JSON null: "no schema" is a NULL the store can test.
    """

    id: str
    environment_id: str
    kind: str
    status: str
    created_at: datetime
    due_at: float | None = None
    #: set when it is created completed (an event sent before its wait)
    output: Any = None
    completed_at: datetime | None = None
    owner_run_id: str | None = None
    tags: list[str] = field(default_factory=list)
    # TOKEN
    idempotency_key: str | None = None
    idempotency_key_expires_at: float | None = None
    callback_secret: str | None = None
    # RUN
    child_run_id: str | None = None
    # EVENT
    event_name: str | None = None
    event_filter: dict[str, Any] | None = None
    event_id: str | None = None
    # TOKEN, EVENT
    schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WebhookEndpointRecord:
    """A row of ``webhook_endpoints``; ``secret_sealed`` opens only with the keyring."""

    id: str
    environment_id: str
    source: str
    event_name: str | None
    options: dict[str, Any]
    secret_sealed: str
    description: str | None
    rejected_count: int
    last_rejected_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookDeliveryRecord:
    """A row of ``webhook_deliveries``: one verified delivery and what it started."""

    id: str
    endpoint_id: str
    environment_id: str
    event_id: str
    event_name: str
    headers: dict[str, str]
    payload: Any
    run_ids: list[str]
    errors: list[dict[str, str]]
    #: ``first``, ``redelivery`` (its event id was seen: nothing started) or
    #: ``rejected-payload`` (a subscriber's model refused it)
    outcome: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QueueRecord:
    """A queue, as ``queues`` stores it (its declared limits and run-time overrides)."""

    id: str
    environment_id: str
    name: str
    concurrency_limit: int | None
    #: set at run time; wins over ``concurrency_limit`` until reset
    concurrency_limit_override: int | None
    overridden_at: datetime | None
    concurrency_key_limit: int | None
    rate_limit_count: int | None
    rate_limit_period: float | None
    paused: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A batch trigger, as ``batches`` stores it; its runs carry its id."""

    id: str
    environment_id: str
    #: how many items the batch holds (a streamed batch declares it up front)
    run_count: int
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    #: set once every item has arrived
    sealed_at: datetime | None
    #: the refused items: ``{index, taskIdentifier, error, errorCode}``
    errors: list[dict[str, Any]] | None
    request_key: str | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A sent event, as ``events`` stores it, and the runs it started."""

    environment_id: str
    name: str
    id: str
    payload: Any
    run_ids: list[str]
    errors: list[dict[str, Any]]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KvEntryRecord:
    """One entry of an environment's key-value store (``kv_entries``)."""

    environment_id: str
    key: str
    value: Any
    expires_at: float | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """The project (``projects``); ``ref`` is its Trigger.dev project ref."""

    id: str
    ref: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EnvironmentRecord:
    """An environment of the project, as ``environments`` stores it."""

    id: str
    project_id: str
    slug: str
    created_at: datetime
    concurrency_limit: int | None
    concurrency_limit_default: int | None
    concurrency_limit_overridden: bool
    retention_days: int | None


@dataclass(frozen=True, slots=True)
class CallerEnvironment:
    """What authentication reads of a caller's environment (joined with its project)."""

    id: str
    slug: str
    project_id: str
    project_ref: str
    #: the run of the attempt whose credential called (None: a key called)
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key, as ``api_keys`` stores it: its hash, never the key."""

    id: str
    environment_id: str
    key_hash: str
    #: the key's first characters, to recognise it by
    display: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    #: the key encrypted under the keyring (to verify the public tokens it signs)
    key_sealed: str | None


@dataclass(frozen=True, slots=True)
class ApiKeyListing:
    """A key as the key lists show it: no hash, no sealed copy, its environment's slug."""

    id: str
    environment_id: str
    display: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    environment_slug: str


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A dashboard user (``dashboard_users``)."""

    id: str
    username: str
    password_hash: str
    created_at: datetime
    #: sessions issued before this epoch time are refused (a sign-out, a new password)
    sessions_valid_after: float


@dataclass(frozen=True, slots=True)
class AlertRuleRecord:
    """An alert rule, as ``alert_rules`` stores it (kinds in ``engine/alerts.py``)."""

    id: str
    environment_id: str
    name: str
    kind: str
    config: dict[str, Any]
    channel: str
    target: str
    #: a webhook's signing secret, encrypted under the keyring
    secret_sealed: str | None
    throttle: float
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AlertDeliveryRecord:
    """One alert to send, as ``alert_deliveries`` stores it (one per rule and window)."""

    id: str
    environment_id: str
    rule_id: str
    dedup_key: str
    status: str
    payload: dict[str, Any]
    #: occurrences inside the rule's throttle window
    count: int
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class DueAlert:
    """A delivery whose time to be sent has come, and the rule that says where to."""

    delivery: AlertDeliveryRecord
    rule: AlertRuleRecord
