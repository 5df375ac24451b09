"""The client: trigger tasks and read runs from any Python app.

:class:`Triggerfish` holds one transport (``_transport.py``) and a namespace
per concern, each in its own module: ``tasks`` and ``batches``
(``_tasks.py``), ``runs`` (``_runs.py``), ``queues`` and ``environment``
(``_queues.py``), ``schedules`` (``_schedules.py``), ``waitpoints``
(``_waitpoints.py``), ``events`` (``_events.py``), ``kv`` (``_kv.py``) and ``webhooks``
(``_webhooks.py``).
Every call is defined once and gets its sync and async faces from
``_calls.py``. The default client, made from the environment, lives here.
"""

from __future__ import annotations

import os
from typing import Any

from triggerfish.errors import ApiError, WrongEnvironment, key_environment
from triggerfish.sdk._alerts import Alerts
from triggerfish.sdk._auth import Auth
from triggerfish.sdk._envvars import EnvVars
from triggerfish.sdk._events import Events
from triggerfish.sdk._kv import Kv
from triggerfish.sdk._models import (
    Attempt,
    Batch,
    BatchHandle,
    LogLine,
    QueueInfo,
    RateLimit,
    Run,
    RunError,
    RunPage,
    Token,
    WaitReason,
)
from triggerfish.sdk._options import wire_options as _wire_options
from triggerfish.sdk._queues import Environment, Queues
from triggerfish.sdk._runs import Runs
from triggerfish.sdk._schedules import Schedules
from triggerfish.sdk._tasks import Batches, Tasks
from triggerfish.sdk._transport import _Transport
from triggerfish.sdk._waitpoints import Waitpoints
from triggerfish.sdk._webhooks import WebhookDelivery, WebhookEndpoint, Webhooks

__all__ = [  # the names this module has always offered, now defined beside it
    "DEFAULT_API_URL",
    "Attempt",
    "Batch",
    "BatchHandle",
    "Batches",
    "EnvVars",
    "Environment",
    "Events",
    "Kv",
    "LogLine",
    "QueueInfo",
    "Queues",
    "RateLimit",
    "Run",
    "RunError",
    "RunPage",
    "Runs",
    "Schedules",
    "Tasks",
    "Token",
    "Triggerfish",
    "WaitReason",
    "Waitpoints",
    "WebhookDelivery",
    "WebhookEndpoint",
    "Webhooks",
    "_wire_options",
    "default_client",
    "resolve_client",
]

DEFAULT_API_URL = "http://127.0.0.1:3030"


def env_setting(name: str) -> str | None:
    """``TRIGGERFISH_<name>``, else Trigger.dev's ``TRIGGER_<name>``: the first one set.

    So code and deployments written for Trigger.dev's environment
    (``TRIGGER_SECRET_KEY``, ``TRIGGER_API_URL``, ``TRIGGER_PROJECT_REF``)
    work unchanged; when both are set, the ``TRIGGERFISH_`` one wins.
    """
    return os.environ.get(f"TRIGGERFISH_{name}") or os.environ.get(f"TRIGGER_{name}") or None


def key_prefix(key: str) -> str:
    """A key as it may be shown: its kind and environment and a few characters."""
    head, _, rest = key.rpartition("_")
    return f"{head}_{rest[:4]}…" if head else f"{key[:4]}…"


class Triggerfish:
    """A client for one environment of a Triggerfish server.

    Reads ``TRIGGERFISH_API_URL``, ``TRIGGERFISH_SECRET_KEY`` and
    ``TRIGGERFISH_PROJECT_REF`` unless given, else Trigger.dev's
    ``TRIGGER_API_URL``, ``TRIGGER_SECRET_KEY`` and ``TRIGGER_PROJECT_REF``
    (the ``TRIGGERFISH_`` name wins when both are set).
    Triggers travel over one WebSocket kept open to the server, everything else
    over HTTP; with ``socket=False`` (or where the socket cannot be opened)
    triggers are HTTP requests too. With ``env="staging"`` the key must be one
    of that environment's (:class:`~triggerfish.errors.WrongEnvironment` if not).

    Errors are typed (``triggerfish.errors``): no server at the URL raises
    :class:`~triggerfish.errors.ServerUnreachable`, a key the server does not
    take :class:`~triggerfish.errors.KeyRejected`, any other refusal
    :class:`~triggerfish.errors.ApiError` with its status.

    ``api_url`` may list several servers of one database, comma-separated
    (``"http://a:3030,http://b:3030"``): a call goes to the next one at once when
    a connection is refused, after ``connect_timeout`` (default 5 s with several
    URLs) when none can be made, and when a server accepts but does not answer,
    after 5 s for reads and triggers (the last server tried has the rest of
    ``timeout``), after ``timeout`` for other calls. Reads and triggers move on; a trigger
    carries the same ``x-trigger-request-idempotency-key`` on each try, so the
    servers make one run of it. ``ServerUnreachable`` names every URL tried.

    Example::

        client = Triggerfish(api_url="http://127.0.0.1:3030", secret_key="tr_dev_…")
        handle = client.tasks.trigger("hello-world", {"who": "Ada"})
        print(client.runs.poll(handle.id).output)
    """

    def __init__(
        self,
        api_url: str | None = None,
        secret_key: str | None = None,
        *,
        timeout: float = 30.0,
        socket: bool = True,
        project_ref: str | None = None,
        env: str | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        # inside a task, the attempt's credential wins over anything in the environment
        attempt_url, credential = _attempt or ("", "")
        url = api_url or attempt_url or env_setting("API_URL") or DEFAULT_API_URL
        key = secret_key or credential or env_setting("SECRET_KEY")
        if not key:
            raise ApiError(
                401,
                "no secret key: pass secret_key=... or set TRIGGERFISH_SECRET_KEY "
                "(or TRIGGER_SECRET_KEY; `triggerfish dev` prints the dev key)",
            )
        #: the project this client expects (``whoami`` says which one the key belongs to)
        self.project_ref = project_ref or env_setting("PROJECT_REF")
        if env is not None and key_environment(key) not in (None, env):
            raise WrongEnvironment(env, key)
        self._transport = _Transport(url, key, timeout, socket, connect_timeout, env)
        self.api_url = self._transport.api_url
        #: the key this client sends, shortened for display (``triggerfish whoami``)
        self.key_prefix = key_prefix(key)
        self.tasks = Tasks(self._transport)
        self.runs = Runs(self._transport)
        self.queues = Queues(self._transport)
        self.alerts = Alerts(self._transport)
        self.environment = Environment(self._transport)
        self.batches = Batches(self._transport)
        #: create, list, change and remove cron schedules
        self.schedules = Schedules(self._transport)
        self.waitpoints = Waitpoints(self._transport)
        self.events = Events(self._transport)
        self.kv = Kv(self._transport)
        #: incoming-webhook endpoints and their deliveries
        self.webhooks = Webhooks(self._transport)
        #: public access tokens for browsers
        self.auth = Auth(self._transport)
        #: the environment variables its task processes get
        self.envvars = EnvVars(self._transport)

    def close(self) -> None:
        self._transport.close()

    async def aclose(self) -> None:
        await self._transport.aclose()


_default: Triggerfish | None = None
#: (server URL, attempt credential) while this process runs a task's attempt
_attempt: tuple[str, str] | None = None


def default_client() -> Triggerfish:
    """The client made from the environment variables, created on first use.

    Inside a task it acts with the running attempt's credential instead (see
    :func:`bind_attempt`): the task's own environment, for as long as the
    attempt lasts, with no key for the user to pass.
    """
    global _default
    if _default is None:
        _default = Triggerfish()
    return _default


def bind_attempt(api_url: str, credential: str) -> None:
    """Make the default client act with ``credential`` (a task process, per attempt)."""
    global _attempt
    _attempt = (api_url, credential) if credential else None


def unbind_attempt() -> Triggerfish | None:
    """End :func:`bind_attempt`; returns the default client it made, for the caller to close."""
    global _attempt, _default
    made, _default = _default, None
    _attempt = None
    return made


def resolve_client(client: Triggerfish | None) -> Triggerfish:
    return client if client is not None else default_client()


class _DefaultNamespace:
    """``triggerfish.runs`` / ``triggerfish.tasks``: the default client's namespaces."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(getattr(default_client(), self._name), attr)
