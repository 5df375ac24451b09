"""What the API answers, as typed models: runs, queues, batches, tokens, log lines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RunError(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    message: str
    name: str | None = None
    stack_trace: str | None = Field(default=None, alias="stackTrace")


class Attempt(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    number: int
    status: str
    started_at: datetime | None = Field(default=None, alias="startedAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    error: RunError | None = None


class WaitReason(BaseModel):
    """Why a run is not running yet: ``code`` (``QUEUE_LIMIT``, ``CONCURRENCY_KEY_LIMIT``,
    ``ENVIRONMENT_LIMIT``, ``RATE_LIMITED``, ``QUEUE_PAUSED``, ``DELAYED``, ``DEBOUNCED``,
    ``RETRY_BACKOFF``, ``WAITING_FOR_VERSION``, ``WAITING_FOR_WORKER``,
    ``WAITING_FOR_SLOT``), a sentence, and when it ends if known."""

    code: str
    message: str
    until: datetime | None = None


class RateLimit(BaseModel):
    limit: int
    period: float


class QueueInfo(BaseModel):
    """A queue, its limits and how many of its runs are running and waiting."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    name: str
    type: str
    running: int
    queued: int
    paused: bool
    concurrency_limit: int | None = Field(default=None, alias="concurrencyLimit")
    concurrency_key_limit: int | None = Field(default=None, alias="concurrencyKeyLimit")
    rate_limit: RateLimit | None = Field(default=None, alias="rateLimit")


class Run(BaseModel):
    """A run as the API returns it. ``output`` and ``error`` are set once it finished."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    status: str
    task_identifier: str = Field(alias="taskIdentifier")
    payload: Any = None
    output: Any = None
    error: RunError | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    #: attempts so far; None where the answer does not say (a list row of a server
    #: that does not count them)
    attempt_count: int | None = Field(default=None, alias="attemptCount")
    attempts: list[Attempt] = Field(default_factory=list)
    is_completed: bool = Field(alias="isCompleted")
    is_success: bool = Field(alias="isSuccess")
    is_failed: bool = Field(alias="isFailed")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
    started_at: datetime | None = Field(default=None, alias="startedAt")
    finished_at: datetime | None = Field(default=None, alias="finishedAt")
    duration_ms: int = Field(default=0, alias="durationMs")
    machine: str | None = None
    queue: str | None = None
    #: what a WAITING run waits for: ``{"type": "DURATION", "until"}``,
    #: ``{"type": "TOKEN", "tokenId"}``, ``{"type": "RUN", "runId"}``,
    #: ``{"type": "EVENT", "event", "filter"}`` (plus ``timeoutAt``)
    waiting_for: list[dict[str, Any]] = Field(default_factory=list, alias="waitingFor")
    #: the run's durable calls in order (``kind``, ``name``, ``status``, times)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    concurrency_key: str | None = Field(default=None, alias="concurrencyKey")
    batch_id: str | None = Field(default=None, alias="batchId")
    replayed_from_run_id: str | None = Field(default=None, alias="replayedFromRunId")
    delayed_until: datetime | None = Field(default=None, alias="delayedUntil")
    #: why a run that has not started yet is waiting (None once it started)
    wait_reason: WaitReason | None = Field(default=None, alias="waitReason")


class RunPage(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    data: list[Run]
    next_cursor: str | None = None
    previous_cursor: str | None = None


class LogLine(BaseModel):
    id: int
    attempt: int
    ts: float
    level: str
    stream: str
    message: str
    fields: dict[str, Any] | None = None


class TaskInfo(BaseModel):
    """A task registered by a worker (``client.tasks.list()``), as its newest
    version declares it; ``versions`` are newest first."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    file: str | None = None
    entry: str | None = None
    queue: dict[str, Any] = Field(default_factory=dict)
    retry: dict[str, Any] = Field(default_factory=dict)
    machine: str | None = None
    max_duration: float | None = Field(default=None, alias="maxDuration")
    schedule: dict[str, Any] | None = None
    on_event: str | None = Field(default=None, alias="onEvent")
    payload_schema: dict[str, Any] | None = Field(default=None, alias="payloadSchema")
    workers_online: int = Field(default=0, alias="workersOnline")
    versions: list[dict[str, Any]] = Field(default_factory=list)


class BatchItemError(BaseModel):
    """A batch item that got no run (unknown task, invalid payload…); the others did."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    index: int
    task_identifier: str = Field(default="", alias="taskIdentifier")
    error: str
    error_code: str | None = Field(default=None, alias="errorCode")


class BatchHandle(BaseModel):
    """A batch just created: its id, its runs' ids in item order, and refused items."""

    id: str
    run_ids: list[str]
    errors: list[BatchItemError] = Field(default_factory=list)


class Batch(BaseModel):
    """A batch and how far its runs got (``status``: PENDING, PROCESSING, COMPLETED,
    PARTIAL_FAILED when some items were refused: see ``errors``)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    status: str
    run_count: int = Field(alias="runCount")
    runs: list[str]
    counts: dict[str, int] = Field(default_factory=dict)
    finished_count: int = Field(default=0, alias="finishedCount")
    errors: list[BatchItemError] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _processing_errors(cls, data: Any) -> Any:
        if isinstance(data, dict) and "errors" not in data:
            processing = data.get("processing")
            if isinstance(processing, dict):
                return {**data, "errors": processing.get("errors") or []}
        return data


class Token(BaseModel):
    """A waitpoint token as the API returns it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    url: str
    status: str = "WAITING"
    is_cached: bool = Field(default=False, alias="isCached")
    output: Any = None
    output_is_error: bool = Field(default=False, alias="outputIsError")
    tags: list[str] = Field(default_factory=list)


def parse_run_page(body: dict[str, Any]) -> RunPage:
    return RunPage(
        data=[Run.model_validate(item) for item in body["data"]],
        next_cursor=body["pagination"].get("next"),
        previous_cursor=body["pagination"].get("previous"),
    )


def parse_token(body: dict[str, Any]) -> Token:
    import json

    data = dict(body)
    if isinstance(data.get("output"), str):
        data["output"] = json.loads(data["output"])
    return Token.model_validate(data)


class RealtimeEvent(BaseModel):
    """One event of a subscription (``runs.subscribe``, ``batches.subscribe``).

    ``kind`` is ``snapshot`` (the run as it was when the subscription began;
    ``data`` is the run as ``runs.list`` shows it) or a change: ``created``,
    ``status`` (``data["status"]``; a final one also has ``output`` and
    ``error``), ``metadata``, ``tags``, ``log``, ``waitpoint``, ``stream``
    (``data["key"]``, ``data["chunk"]``). ``id`` is the change feed's position.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: int
    kind: str
    run_id: str | None = Field(default=None, alias="runId")
    batch_id: str | None = Field(default=None, alias="batchId")
    data: Any = None
    created_at: float | None = Field(default=None, alias="createdAt")

    @property
    def status(self) -> str | None:
        """The run's status after this event, when it says."""
        if isinstance(self.data, dict) and self.kind in ("snapshot", "created", "status"):
            status = self.data.get("status")
            return str(status) if status is not None else None
        return None
