"""Slack: post messages, read a channel, and start tasks from slash commands.

Configuration (environment: ``SLACK_BOT_TOKEN``; ``SLACK_BASE_URL`` for a
stand-in of the Web API)::

    from triggerfish.integrations import slack

    conn = slack.slack.connect()

    @task(id="notify")
    def notify(payload: dict) -> str:
        sent = conn.send_message("post", {"channel": "C123", "text": "deployed"})
        return sent.ts

    @slack.slack.trigger("command", verifier=SlackVerifier())
    def on_command(payload: slack.SlashCommand) -> dict: ...

The trigger's endpoint (``slack.create_webhook("command", client, secret=…)``
with the app's signing secret) is the slash command's request URL. Slack
answers errors with ``{"ok": false}`` and status 200; they raise
:class:`SlackApiError`, which fails the step (and so is retried).
"""

from __future__ import annotations

import httpx
from pydantic import BaseModel, Field

from triggerfish.integrations._kit import ActionContext, Integration


class SlackConfig(BaseModel):
    bot_token: str
    base_url: str = "https://slack.com/api"


class SendMessage(BaseModel):
    channel: str = Field(min_length=1)
    text: str = Field(min_length=1)
    thread_ts: str | None = None


class SentMessage(BaseModel):
    channel: str
    ts: str


class GetChannelInfo(BaseModel):
    channel: str = Field(min_length=1)


class ChannelInfo(BaseModel):
    found: bool
    id: str | None = None
    name: str | None = None
    member_count: int | None = None


class SlashCommand(BaseModel):
    """A slash command's form, as Slack posts it to the request URL."""

    command: str
    text: str = ""
    user_id: str
    channel_id: str
    team_id: str | None = None
    response_url: str | None = None
    trigger_id: str | None = None


class SlackApiError(Exception):
    """The Web API answered ``ok: false`` (``error`` names why)."""

    def __init__(self, method: str, error: str) -> None:
        self.error = error
        super().__init__(f"slack {method}: {error}")


def _client(config: SlackConfig) -> httpx.Client:
    return httpx.Client(
        base_url=config.base_url,
        headers={"Authorization": f"Bearer {config.bot_token}"},
        timeout=10.0,
    )


slack: Integration[SlackConfig] = Integration(
    "slack", config=SlackConfig, name="Slack", icon="slack", http=_client
)


def _answer(method: str, response: httpx.Response) -> dict[str, object]:
    response.raise_for_status()
    body: dict[str, object] = response.json()
    if not body.get("ok"):
        raise SlackApiError(method, str(body.get("error", "unknown_error")))
    return body


@slack.action("send-message", input=SendMessage, output=SentMessage, name="send message")
def send_message(input: SendMessage, ctx: ActionContext[SlackConfig]) -> SentMessage:
    body = _answer(
        "chat.postMessage",
        ctx.http.post("/chat.postMessage", json=input.model_dump(exclude_none=True)),
    )
    return SentMessage(channel=str(body["channel"]), ts=str(body["ts"]))


@slack.action("get-channel-info", input=GetChannelInfo, output=ChannelInfo, name="channel info")
def get_channel_info(input: GetChannelInfo, ctx: ActionContext[SlackConfig]) -> ChannelInfo:
    params = {"channel": input.channel, "include_num_members": "true"}
    response = ctx.http.get("/conversations.info", params=params)
    response.raise_for_status()
    body = response.json()
    if not body.get("ok"):
        if body.get("error") == "channel_not_found":
            return ChannelInfo(found=False)
        raise SlackApiError("conversations.info", str(body.get("error", "unknown_error")))
    channel = body["channel"]
    return ChannelInfo(
        found=True,
        id=channel.get("id"),
        name=channel.get("name"),
        member_count=channel.get("num_members"),
    )
