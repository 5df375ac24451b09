"""The integrations kit: a connector's config, typed actions that run as steps, triggers.

An :class:`Integration` declares its configuration model (an API key, a base
URL); :meth:`Integration.action` declares an action with a typed input and
output; :meth:`Integration.trigger` turns a handler into a task started by the
integration's webhook. :meth:`Integration.connect` reads the configuration
from the worker's environment (never from a payload) and gives a
:class:`Connection` whose action calls, inside a task, are journaled steps: a
replay returns the recorded output and does not call the service again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
import pydantic

from triggerfish._domain.retry import RetryPolicy
from triggerfish.sdk._durable import _current
from triggerfish.sdk._step import step
from triggerfish.sdk._task import Task, task
from triggerfish.verifiers import Verifier

C = TypeVar("C", bound=pydantic.BaseModel)
I = TypeVar("I", bound=pydantic.BaseModel)  # noqa: E741
O = TypeVar("O", bound=pydantic.BaseModel)  # noqa: E741

ActionFn = Callable[[Any, "ActionContext[Any]"], Any]


class ActionValidationError(ValueError):
    """An action's input (before the call) or output (after it) does not fit its model.

    ``field`` is the dotted path of the first offending field.
    """

    def __init__(self, where: str, side: str, error: pydantic.ValidationError) -> None:
        first = error.errors()[0]
        self.field = ".".join(str(p) for p in first["loc"]) or side
        self.side = side
        super().__init__(f"{where}: {side}.{self.field}: {first['msg']}")


@dataclass
class ActionContext(Generic[C]):
    """What an action's function gets beside its input."""

    #: the validated configuration (credentials included: keep it out of return values)
    config: C
    #: an httpx client made by the integration's ``http`` factory for this call
    http: httpx.Client


@dataclass(frozen=True)
class Action:
    id: str
    name: str
    icon: str | None
    input: type[pydantic.BaseModel]
    output: type[pydantic.BaseModel]
    fn: ActionFn
    retry: RetryPolicy | None


@dataclass(frozen=True)
class IntegrationTrigger:
    id: str
    event_name: str
    verifier: Verifier
    task: Task[Any, Any]


def _default_http(config: Any) -> httpx.Client:
    return httpx.Client(timeout=10.0)


class Integration(Generic[C]):
    """A connector: its config model, actions and webhook triggers.

    Example (the seed guide's custom chat connector)::

        class ChatConfig(BaseModel):
            api_key: str
            base_url: str = "https://chat.example.com/api"

        chat = Integration("simple-chat", config=ChatConfig, name="Simple Chat", icon="chat",
                           http=lambda c: httpx.Client(base_url=c.base_url, headers={
                               "Authorization": f"Bearer {c.api_key}"}, timeout=10))

        @chat.action("send-message", input=SendMessage, output=SentMessage)
        def send_message(input: SendMessage, ctx: ActionContext[ChatConfig]) -> SentMessage:
            r = ctx.http.post("/messages", json=input.model_dump())
            r.raise_for_status()         # a non-OK answer fails the step: it is retried
            return SentMessage.model_validate(r.json())

        conn = chat.connect()            # SIMPLE_CHAT_API_KEY, SIMPLE_CHAT_BASE_URL
        conn.send_message("greet", {"channel": "general", "text": "hi"})  # inside a task
    """

    def __init__(
        self,
        id: str,
        *,
        config: type[C],
        name: str | None = None,
        icon: str | None = None,
        env_prefix: str | None = None,
        http: Callable[[C], httpx.Client] | None = None,
    ) -> None:
        if not id or not all(ch.isalnum() or ch in "-_" for ch in id):
            raise ValueError(f"integration id {id!r}: letters, digits, '-' and '_' only")
        self.id = id
        self.config = config
        self.name = name or id
        self.icon = icon
        #: the prefix of its configuration's environment variables (``SIMPLE_CHAT_``)
        self.env_prefix = env_prefix or id.upper().replace("-", "_") + "_"
        self.http = http or _default_http
        self.actions: dict[str, Action] = {}
        self.triggers: dict[str, IntegrationTrigger] = {}

    def action(
        self,
        id: str,
        *,
        input: type[I],
        output: type[O],
        name: str | None = None,
        icon: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[Callable[[I, ActionContext[C]], O | dict[str, Any]]], Action]:
        """Declare an action: ``fn(input, ctx) -> output`` (a model, or a dict that fits it)."""
        if id in self.actions:
            raise ValueError(f"integration {self.id!r}: action {id!r} declared twice")

        def decorate(fn: Callable[[I, ActionContext[C]], O | dict[str, Any]]) -> Action:
            made = Action(id, name or id, icon or self.icon, input, output, fn, retry)
            self.actions[id] = made
            return made

        return decorate

    def trigger(
        self,
        id: str,
        *,
        verifier: Verifier,
        task_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[Callable[..., Any]], Task[Any, Any]]:
        """Make ``handler`` a task started by this integration's webhook (event
        ``<integration>.<id>``); its payload model validates each delivery.

        Create the webhook URL with :meth:`create_webhook`.
        """
        event_name = f"{self.id}.{id}"

        def decorate(handler: Callable[..., Any]) -> Task[Any, Any]:
            made = task(id=task_id or event_name, on_event=event_name, retry=retry)(handler)
            self.triggers[id] = IntegrationTrigger(id, event_name, verifier, made)
            return made

        return decorate

    def webhook_options(self, trigger_id: str) -> dict[str, Any]:
        """The arguments of ``client.webhooks.create`` for one trigger's endpoint."""
        found = self.triggers[trigger_id]
        return {
            "source": found.verifier.source,
            "event_name": found.event_name,
            "options": found.verifier.options,
        }

    def create_webhook(self, trigger_id: str, client: Any, *, secret: str | None = None) -> Any:
        """Create the endpoint a trigger's source delivers to; returns it (with its URL)."""
        return client.webhooks.create(secret=secret, **self.webhook_options(trigger_id))

    def connect(self, config: C | dict[str, Any] | None = None) -> Connection[C]:
        """A connection with ``config``, or with the configuration read from the
        environment (``<PREFIX><FIELD>`` for each field: ``SIMPLE_CHAT_API_KEY``)."""
        if config is None:
            found = {
                field: os.environ[self.env_prefix + field.upper()]
                for field in self.config.model_fields
                if self.env_prefix + field.upper() in os.environ
            }
            config = found
        try:
            checked = self.config.model_validate(config)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ValueError(
                f"integration {self.id!r}: config.{field}: {first['msg']} "
                f"(set {self.env_prefix}{field.upper()} in the worker's environment)"
            ) from None
        return Connection(self, checked)


class Connection(Generic[C]):
    """An integration with its configuration: call its actions.

    ``conn.run(action_id, key, input)``, or the action's own name
    (``conn.send_message(key, input)``). Inside an ``async def`` task use
    ``await conn.run_async(...)``.
    """

    def __init__(self, integration: Integration[C], config: C) -> None:
        self.integration = integration
        self._config = config

    def __repr__(self) -> str:  # never shows the configuration: it holds credentials
        return f"<Connection {self.integration.id}>"

    def _action(self, action_id: str) -> Action:
        found = self.integration.actions.get(action_id)
        if found is None:
            known = ", ".join(sorted(self.integration.actions)) or "none"
            raise KeyError(
                f"integration {self.integration.id!r} has no action {action_id!r} (known: {known})"
            )
        return found

    def _prepare(self, action_id: str, input: Any) -> tuple[Action, dict[str, Any], dict[str, Any]]:
        action = self._action(action_id)
        where = f"{self.integration.id}.{action.id}"
        try:
            checked = action.input.model_validate(input)
        except pydantic.ValidationError as exc:
            raise ActionValidationError(where, "input", exc) from None
        display = {
            "name": f"{self.integration.name}: {action.name}",
            **({"icon": action.icon} if action.icon else {}),
            "properties": {"integration": self.integration.id, "action": action.id},
        }
        return action, checked.model_dump(mode="json"), display

    def run(self, action_id: str, key: str, input: Any) -> Any:
        """Call an action; its validated output model. A step named ``key`` inside a task."""
        action, data, display = self._prepare(action_id, input)
        if _current.get() is None:
            return self._output(action, self._call(action.id, data))
        result = step.run(key, self._call, action.id, data, retry=action.retry, **display)
        return self._output(action, result)

    async def run_async(self, action_id: str, key: str, input: Any) -> Any:
        """:meth:`run` for ``async def`` tasks."""
        action, data, display = self._prepare(action_id, input)
        if _current.get() is None:
            return self._output(action, self._call(action.id, data))
        result = await step.run(key, self._call, action.id, data, retry=action.retry, **display)
        return self._output(action, result)

    def __getattr__(self, name: str) -> Callable[[str, Any], Any]:
        for action in self.integration.actions.values():
            if name in (action.fn.__name__, action.id.replace("-", "_")):
                action_id = action.id
                return lambda key, input: self.run(action_id, key, input)
        raise AttributeError(f"integration {self.integration.id!r} has no action {name!r}")

    def _call(self, action_id: str, data: dict[str, Any]) -> dict[str, Any]:
        action = self._action(action_id)
        with self.integration.http(self._config) as http:
            value = action.fn(action.input.model_validate(data), ActionContext(self._config, http))
        dumped: dict[str, Any] = self._output(action, value).model_dump(mode="json")
        return dumped

    def _output(self, action: Action, value: Any) -> Any:
        try:
            return action.output.model_validate(value)
        except pydantic.ValidationError as exc:
            raise ActionValidationError(
                f"{self.integration.id}.{action.id}", "output", exc
            ) from None
