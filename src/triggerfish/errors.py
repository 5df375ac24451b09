"""Exception types raised by Triggerfish.

Every error the platform raises derives from :class:`TriggerfishError`::

    TriggerfishError
    ├── UserError                     bad input from the caller (4xx)
    │   ├── PayloadValidationError    payload does not match the task's model (422)
    │   ├── PayloadTooLarge           payload above the configured limit (413)
    │   ├── TaskNotFound              no worker has registered this task (404)
    │   ├── RunNotFound               no such run in this environment (404)
    │   ├── ScheduleNotFound          no such schedule in this environment (404)
    │   ├── InvalidSchedule           bad cron, time zone, or not a scheduled task (422)
    │   ├── QueueNotFound             no such queue in this environment (404)
    │   ├── BatchNotFound             no such batch in this environment (404)
    │   ├── RunNotReschedulable       reschedule of a run that is not DELAYED (422)
    │   ├── WebhookNotFound           no such webhook endpoint (404)
    │   ├── WebhookUnnamed            a delivery names no event and the endpoint has none (422)
    │   └── InvalidTaskOptions        bad @task(...) or trigger options (422)
    ├── AuthenticationError           missing, unknown or revoked API key (401)
    │   └── WebhookSignatureInvalid   a webhook delivery's signature does not verify (401)
    ├── PermissionDenied              the credential may not do this (403)
    ├── ConflictError
    │   └── StaleTransition           a report lost a race: the run moved on (409)
    ├── NonDeterminismError           replayed code diverged from the journal
    ├── StepFailedError               a step used up its retries (replays as the same failure)
    ├── WaitpointNotFound             no such waitpoint token (404)
    ├── StoreUnavailable
    │   ├── SchemaNotMigrated         database needs `triggerfish db migrate`
    │   └── ServerBusy                too many requests wait for the store; retry later (503)
    ├── ApiError                      client side: the server answered an error
    │   ├── KeyRejected               client side: the server does not take this key (401)
    │   └── RunTimeout                client side: a run did not finish in time
    ├── ServerUnreachable             client side: no server answers at the URL
    ├── ConnectionLost                client side: the connection dropped before the answer
    └── WrongEnvironment              client side: the key is not one of the environment named

Raised inside task code to steer the run:

    AbortTaskRunError                 fail the run now, without retrying

Raised by the platform inside task code, never to be caught:

    RunSuspended(BaseException)       the run waits durably; the attempt ends here
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TriggerfishError(Exception):
    """Base of every Triggerfish error."""


class UserError(TriggerfishError):
    """The caller sent something the platform cannot accept."""

    status_code = 400


class PayloadValidationError(UserError):
    """The payload does not match the task's payload model.

    ``field`` is the dotted path of the first offending field (``payload.email``).
    """

    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class PayloadTooLarge(UserError):
    status_code = 413

    def __init__(self, size: int, limit: int) -> None:
        self.size, self.limit = size, limit
        super().__init__(
            f"payload is {size} bytes, above the limit of {limit} bytes; "
            "store large data elsewhere and pass a reference"
        )


class TaskNotFound(UserError):
    status_code = 404

    def __init__(self, task_id: str, known: list[str] | None = None) -> None:
        self.task_id = task_id
        hint = (
            f" (known: {', '.join(repr(k) for k in sorted(known))})"
            if known
            else " (no worker has registered any task in this environment yet)"
        )
        super().__init__(f"task {task_id!r} not found{hint}")


class RunNotFound(UserError):
    status_code = 404

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id!r} not found in this environment")


class QueueNotFound(UserError):
    status_code = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"queue {what} not found in this environment")


class BatchNotFound(UserError):
    status_code = 404

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id!r} not found in this environment")


class EnvVarNotFound(UserError):
    status_code = 404

    def __init__(self, name: str, env_slug: str) -> None:
        super().__init__(f"environment variable {name!r} not found in environment {env_slug!r}")


class RunNotReschedulable(UserError):
    status_code = 422

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is {status}; only DELAYED runs can be rescheduled")


class InvalidTaskOptions(UserError):
    status_code = 422


class ScheduleNotFound(UserError):
    status_code = 404

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(
            f"schedule {ref!r} not found in this environment (looked up by id and "
            "by deduplication key)"
        )


class InvalidSchedule(UserError):
    """A schedule that cannot be created or changed: the message names the field and the fix."""

    status_code = 422


class AuthenticationError(TriggerfishError):
    status_code = 401


class WebhookSignatureInvalid(AuthenticationError):
    """A webhook delivery's signature is missing, stale or wrong (counted on the endpoint)."""

    def __init__(self, endpoint_id: str, why: str) -> None:
        self.endpoint_id = endpoint_id
        super().__init__(f"webhook {endpoint_id}: signature refused: {why}")


class WebhookNotFound(UserError):
    status_code = 404

    def __init__(self, endpoint_id: str) -> None:
        self.endpoint_id = endpoint_id
        super().__init__(f"webhook endpoint {endpoint_id!r} not found")


class WebhookUnnamed(UserError):
    """A verified delivery names no event type and its endpoint has no fixed event name."""

    status_code = 422


class PermissionDenied(TriggerfishError):
    """The caller is known but its credential does not reach this (an attempt
    credential acting as a worker, or on another run's journal)."""

    status_code = 403


class ConflictError(TriggerfishError):
    status_code = 409


class StaleTransition(ConflictError):
    """A state change was refused because the run is no longer where the caller thought.

    Raised for late or duplicate worker reports (an attempt that was reclaimed
    after a missed heartbeat, a completion sent twice).
    """

    def __init__(self, run_id: str, to: str, attempt_id: str | None = None) -> None:
        self.run_id, self.to, self.attempt_id = run_id, to, attempt_id
        who = f" by attempt {attempt_id}" if attempt_id else ""
        super().__init__(f"run {run_id} cannot move to {to}{who}: it has moved on")


class NonDeterminismError(TriggerfishError):
    """Replayed task code called a different durable operation than the journal holds.

    The message names the position and both calls, e.g. ``step 3: the journal has
    step.run('render'), the code called wait.for_token()``. The run fails without
    retrying: code between durable calls must make the same calls in the same order.
    """


class StepFailedError(TriggerfishError):
    """A ``step.run`` failed on its last try; replays raise it again, never re-run the step.

    ``name`` and ``message`` are those of the exception the step raised.
    """

    def __init__(self, step: str, error: dict[str, Any], tries: int) -> None:
        self.step, self.error, self.tries = step, error, tries
        self.original_name = str(error.get("name", "Exception"))
        super().__init__(
            f"step {step!r} failed after {tries} tr{'y' if tries == 1 else 'ies'}: "
            f"{self.original_name}: {error.get('message', '')}"
        )


class WaitpointNotFound(UserError):
    status_code = 404

    def __init__(self, waitpoint_id: str, why: str = "not found in this environment") -> None:
        self.waitpoint_id = waitpoint_id
        super().__init__(f"waitpoint {waitpoint_id!r} {why}")


class RunSuspended(BaseException):
    """Ends the current attempt because the run now waits durably (WAITING).

    Derives from ``BaseException`` so that a task's ``except Exception`` cannot
    swallow it; the run is resumed from its journal when the wait resolves.
    """


class StoreUnavailable(TriggerfishError):
    pass


class ServerBusy(StoreUnavailable):
    """The server turned a request away rather than queue it longer: too many wait
    for the store at once (a burst of new realtime subscribers). The answer is a
    503 with ``Retry-After: retry_after``."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SchemaNotMigrated(StoreUnavailable):
    def __init__(self, url: str, current: str | None, head: str) -> None:
        super().__init__(
            f"database {url} is at schema revision {current or 'none'}, this version needs "
            f"{head}; run `triggerfish db migrate` (with the same DATABASE_URL) first"
        )


class ApiError(TriggerfishError):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        self.status, self.body = status, body
        super().__init__(f"{status}: {message}")


class ConnectionLost(TriggerfishError):
    """The connection to the server closed (or went silent) after a call was sent
    and before it was answered: the call may or may not have taken effect."""

    def __init__(self, op: str, url: str, cause: BaseException) -> None:
        super().__init__(
            f"the connection to {url} was lost before the server answered {op} ({cause}); "
            "it may have taken effect: to retry a trigger safely, give it an idempotency_key"
        )


class ServerUnreachable(TriggerfishError):
    """No server answered at ``url`` (connection refused, timed out, unknown host).

    Nothing was sent, so the call had no effect and may simply be made again;
    ``runs.poll`` and ``triggerfish runs logs --follow`` do so until their timeout.

    Example::

        try:
            handle = client.tasks.trigger("send-email", {"to": to})
        except ServerUnreachable as exc:
            log.warning("Triggerfish is down (%s); will retry", exc.url)
    """

    def __init__(self, url: str, cause: BaseException | str) -> None:
        self.url = url
        self.reason = reason = str(cause) or type(cause).__name__
        #: every server tried and why each failed (one entry with a single URL)
        self.tried: list[tuple[str, str]] = [(url, reason)]
        super().__init__(
            f"cannot reach the Triggerfish server at {url} ({reason}); is it running? "
            "start one with `triggerfish dev`, or point TRIGGERFISH_API_URL (--api-url) at yours"
        )

    @classmethod
    def of_all(cls, tried: Sequence[tuple[str, BaseException]]) -> ServerUnreachable:
        """No server of a list answered: the error names each one and its failure."""
        if len(tried) == 1:
            return cls(*tried[0])
        reasons = [(url, str(exc) or type(exc).__name__) for url, exc in tried]
        error = cls(
            ", ".join(url for url, _ in reasons),
            "; ".join(f"{url}: {reason}" for url, reason in reasons),
        )
        error.tried = reasons
        return error


class KeyRejected(ApiError):
    """The server at ``url`` does not take the key: unknown there, or revoked.

    The message names the key's environment (read from its ``tr_<env>_`` prefix)
    and the server, since the usual cause is a key of another server or
    environment (a dev key sent to a production server).

    Example::

        except KeyRejected as exc:
            sys.exit(f"check TRIGGERFISH_SECRET_KEY for {exc.url}")
    """

    def __init__(self, url: str, key: str, message: str) -> None:
        self.url = url
        env = key_environment(key)
        what = f"this {env} key ({key[: len(env) + 8]}…)" if env else "this key"
        super().__init__(
            401,
            f"the server at {url} refused {what}: {message}. It was made by another "
            "server or database, or for another environment, or it was revoked; "
            "`triggerfish dev` prints the dev server's key, `triggerfish keys create "
            "--env ENV` makes one on a server",
        )


class WrongEnvironment(TriggerfishError):
    """A client was asked for an environment (``env=``, ``--env``) that its key is not of.

    Example: ``Triggerfish(secret_key="tr_dev_…", env="prod")`` raises it at once,
    before anything is sent.
    """

    def __init__(self, wanted: str, key: str) -> None:
        self.wanted = wanted
        have = key_environment(key) or "unknown"
        super().__init__(
            f"--env {wanted} was asked for, but the secret key is a key of environment "
            f"{have!r}; pass a key of {wanted!r} (`triggerfish keys create --env {wanted}`)"
        )


#: the environment a client was asked for (``env=``, ``--env``), sent on every
#: request so the server checks it against the key's own environment
ENVIRONMENT_HEADER = "x-triggerfish-environment"


class EnvironmentMismatch(PermissionDenied):
    """The server's answer (403) to a request for one environment made with a key
    of another (the ``x-triggerfish-environment`` header)."""

    def __init__(self, wanted: str, have: str) -> None:
        self.wanted, self.have = wanted, have
        super().__init__(
            f"{ENVIRONMENT_HEADER}: the request is for environment {wanted!r}, but the key "
            f"is a key of environment {have!r}; pass a key of {wanted!r} "
            f"(`triggerfish keys create --env {wanted}`)"
        )


def key_environment(key: str) -> str | None:
    """The environment slug a secret key was made for (``tr_<slug>_<random>``), if it says."""
    parts = key.split("_")
    if len(parts) == 3 and parts[0] == "tr" and parts[1]:
        return parts[1]
    return None


class RunTimeout(ApiError):
    def __init__(self, run_id: str, timeout: float) -> None:
        super().__init__(408, f"run {run_id} did not finish within {timeout:g}s")


class AbortTaskRunError(Exception):
    """Raise inside a task to fail the run immediately, without further retries.

    Example::

        @task(id="charge")
        def charge(payload: dict) -> None:
            if payload["amount"] <= 0:
                raise AbortTaskRunError("amount must be positive")
    """
