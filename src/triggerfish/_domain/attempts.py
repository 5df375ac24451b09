"""One attempt as the worker hands it to a task process, and how it ended.

The worker's API client reads a claimed run into a :class:`Job`; a task
process runs it through the SDK's runtime (``sdk/_runtime.py``), which answers
with an :data:`AttemptOutcome`, matched exhaustively where it is consumed.
Both cross the task process's pipe as plain tuples (``worker/_pipe.py``), and
become the worker API's JSON only at the worker's edge
(``worker/api_client.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from triggerfish._domain.states import FailureKind


@dataclass(frozen=True, slots=True)
class EnvironmentRef:
    """The environment a run belongs to, as its task sees it."""

    id: str
    slug: str


@dataclass(frozen=True, slots=True)
class DirectLink:
    """Where a task process sends its own journal writes (``worker/_direct.py``)."""

    url: str
    #: the largest frame the server accepts; larger writes go through the worker
    max_frame: int


@dataclass(frozen=True, slots=True)
class Job:
    """Everything a task process needs to run one attempt of a run."""

    run_id: str
    attempt_id: str
    attempt_number: int
    task_id: str
    payload: Any
    tags: tuple[str, ...]
    environment: EnvironmentRef
    machine: str
    #: the run's own limit in seconds; None: the task's, if it declares one
    max_duration: float | None
    #: the run's journal entries so far (a replay reads them instead of redoing steps)
    journal: Sequence[Mapping[str, Any]] = ()
    metadata: dict[str, Any] | None = None
    #: the worker's link for the task process's own journal writes; None: relay them
    direct: DirectLink | None = None
    #: what the task process acts with: its attempt's credential and the server's URL
    credential: str = ""
    api_url: str = ""
    #: the environment's variables (``triggerfish envvars``) as the claim read them:
    #: set in the task process for this attempt only
    env_vars: tuple[tuple[str, str], ...] = ()
    #: the run's trace (32 hex digits; ``_domain/traces.py``); "" when unknown
    trace_id: str = ""
    #: the run's own attempt limit; None: the task's retry policy (hooks ask
    #: whether a failure is the last one)
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An attempt's error as the server stores it, with the kind that decides what follows."""

    name: str
    message: str
    stack_trace: str
    kind: FailureKind


@dataclass(frozen=True, slots=True)
class Decision:
    """A ``catch_error`` hook's verdict on a failed attempt (a skip is a success)."""

    action: Literal["retry", "fail"]
    #: seconds before the retry; None: the task's retry policy decides
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Succeeded:
    output: Any


@dataclass(frozen=True, slots=True)
class Failed:
    error: ErrorInfo
    decision: Decision | None = None


@dataclass(frozen=True, slots=True)
class Suspended:
    """The run now waits durably; the server parked it when it accepted the wait."""


@dataclass(frozen=True, slots=True)
class Abandoned:
    """The server stopped accepting this attempt's records; nothing is reported."""

    reason: str


#: how one attempt ended; the worker reports the first two, never the others
AttemptOutcome = Succeeded | Failed | Suspended | Abandoned
#: what a finished attempt reports to the server
Finished = Succeeded | Failed
