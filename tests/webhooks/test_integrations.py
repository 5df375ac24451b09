"""The integrations kit: the seed guide's custom chat connector (scenario L), and Slack.

Each service is faked by a local app over real HTTP; actions run inside tasks
on the real engine and store, so their calls are journaled steps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tests.support.http_apps import serving_asgi
from tests.support.in_process import in_process_worker, run_record, trigger_run
from tests.webhooks.conftest import Site
from triggerfish import retry, task, wait
from triggerfish.engine import Engine
from triggerfish.integrations import ActionContext, ActionValidationError, Integration
from triggerfish.integrations import slack as slack_kit
from triggerfish.integrations.http import http_json
from triggerfish.sdk._registry import TaskRegistry, collecting_into
from triggerfish.verifiers import HmacSha256Verifier, SlackVerifier

API_KEY = "chat-api-key"
#: the kit adds no store feature (the journal and webhooks are tested on both stores)
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
FAST = retry(max_attempts=3, min_delay=0, max_delay=0, jitter=0)


# -- the fake chat service ---------------------------------------------------------------


def chat_service(hits: Counter[str], sent: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/messages")
    async def post_message(request: Request, authorization: str = Header("")) -> Any:
        hits["messages"] += 1
        if authorization != f"Bearer {API_KEY}":
            return JSONResponse({"error": "bad api key"}, status_code=401)
        body = await request.json()
        if body["channel"] == "flaky" and hits["messages"] == 1:
            return JSONResponse({"error": "try later"}, status_code=503)
        sent.append(body)
        return {"id": f"msg-{len(sent)}"}

    @app.get("/channels/{name}")
    async def channel(name: str) -> Any:
        hits["channels"] += 1
        if name != "general":
            return JSONResponse({"error": "no such channel"}, status_code=404)
        return {"name": "General Chat", "memberCount": 123}

    # a Slack Web API stand-in
    @app.post("/slack/chat.postMessage")
    async def slack_post(request: Request, authorization: str = Header("")) -> Any:
        hits["slack.post"] += 1
        if authorization != "Bearer xoxb-test":
            return {"ok": False, "error": "invalid_auth"}
        body = await request.json()
        sent.append(body)
        return {"ok": True, "channel": body["channel"], "ts": "1700000000.000100"}

    @app.get("/slack/conversations.info")
    async def slack_info(channel: str) -> Any:
        if channel != "C1":
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "channel": {"id": "C1", "name": "general", "num_members": 123}}

    return app


@pytest.fixture
def service() -> Iterator[tuple[str, Counter[str], list[dict[str, Any]]]]:
    hits: Counter[str] = Counter()
    sent: list[dict[str, Any]] = []
    with serving_asgi(chat_service(hits, sent)) as url:
        yield url, hits, sent


# -- the connector, as the guide defines it ----------------------------------------------


class ChatConfig(BaseModel):
    api_key: str
    base_url: str


class SendMessageInput(BaseModel):
    channel: str = Field(min_length=1)
    message: str = Field(min_length=1)


class SendMessageOutput(BaseModel):
    success: bool
    message_id: str


class ChannelInput(BaseModel):
    channel_name: str


class ChannelInfo(BaseModel):
    name: str | None = None
    member_count: int | None = None
    found: bool


class IncomingMessage(BaseModel):
    channel: str
    user: str
    text: str


simple_chat: Integration[ChatConfig] = Integration(
    "simple-chat",
    config=ChatConfig,
    name="Simple Chat",
    icon="chat",
    http=lambda c: httpx.Client(
        base_url=c.base_url, headers={"Authorization": f"Bearer {c.api_key}"}, timeout=5
    ),
)


@simple_chat.action("send-message", input=SendMessageInput, output=SendMessageOutput)
def send_message(input: SendMessageInput, ctx: ActionContext[ChatConfig]) -> dict[str, Any]:
    r = ctx.http.post("/messages", json={"channel": input.channel, "text": input.message})
    if not r.is_success:
        raise RuntimeError(f"chat API answered {r.status_code}: {r.text}")
    return {"success": True, "message_id": r.json()["id"]}


@simple_chat.action("get-channel-info", input=ChannelInput, output=ChannelInfo)
def get_channel_info(input: ChannelInput, ctx: ActionContext[ChatConfig]) -> ChannelInfo:
    r = ctx.http.get(f"/channels/{input.channel_name}")
    if r.status_code == 404:
        return ChannelInfo(found=False)
    r.raise_for_status()
    return ChannelInfo(name=r.json()["name"], member_count=r.json()["memberCount"], found=True)


def _registry(url: str, api_key: str = API_KEY) -> TaskRegistry:
    registry = TaskRegistry()
    conn = simple_chat.connect({"api_key": api_key, "base_url": url})
    with collecting_into(registry):

        @task(id="manual.send.message", retry=FAST)
        def manual_send(payload: dict[str, Any]) -> Any:
            sent = conn.send_message("send-message-action", payload)
            info = conn.get_channel_info("channel-info", {"channel_name": "general"})
            wait.for_event("chat.go-on")
            return {"id": sent.message_id, "members": info.member_count}

        @simple_chat.trigger(
            "message-received", verifier=HmacSha256Verifier(header="x-chat-signature")
        )
        def on_message(payload: IncomingMessage) -> str:
            return f"{payload.user} in {payload.channel}: {payload.text}"

    return registry


@SQLITE_ONLY
async def test_send_message_is_a_retried_step_a_replay_does_not_repeat(
    engine: Engine, service: tuple[str, Counter[str], list[dict[str, Any]]]
) -> None:
    url, hits, sent = service
    env_id, worker = await in_process_worker(engine, _registry(url))
    run_id = await trigger_run(
        engine, env_id, "manual.send.message", {"channel": "flaky", "message": "hi"}
    )
    await worker.run_until_idle()
    assert (await run_record(engine, env_id, run_id)).status == "WAITING"
    assert hits["messages"] == 2 and sent == [{"channel": "flaky", "text": "hi"}]
    await engine.events.send(env_id, "chat.go-on", {})
    (done,) = await worker.run_until_idle()
    assert done.output == {"id": "msg-1", "members": 123}
    # the body ran twice, each call once
    assert hits == Counter(messages=2, channels=1)
    steps = (await engine.runs.retrieve(env_id, run_id)).steps
    first = steps[0]
    assert first.name == "send-message-action" and first.failures == 1
    assert first.display == {
        "name": "Simple Chat: send-message",
        "icon": "chat",
        "properties": {"integration": "simple-chat", "action": "send-message"},
    }


@SQLITE_ONLY
async def test_a_rejected_api_key_fails_the_run_after_the_steps_retries(
    engine: Engine, service: tuple[str, Counter[str], list[dict[str, Any]]]
) -> None:
    url, hits, _ = service
    env_id, worker = await in_process_worker(engine, _registry(url, api_key="wrong"))
    run_id = await trigger_run(
        engine, env_id, "manual.send.message", {"channel": "general", "message": "hi"}
    )
    await worker.run_until_idle()
    run = await run_record(engine, env_id, run_id)
    assert run.status == "FAILED" and "401" in json.dumps(run.error)
    assert (
        hits["messages"] == 3
    )  # the step's three tries, then the run's retries replay the failure


def test_channel_info_and_validation_outside_a_task(
    service: tuple[str, Counter[str], list[dict[str, Any]]],
) -> None:
    url, hits, _ = service
    conn = simple_chat.connect({"api_key": API_KEY, "base_url": url})
    general = conn.get_channel_info("k", {"channel_name": "general"})
    assert general == ChannelInfo(name="General Chat", member_count=123, found=True)
    assert conn.get_channel_info("k", {"channel_name": "random"}).found is False
    with pytest.raises(ActionValidationError) as bad:
        conn.send_message("k", {"channel": "", "message": "hi"})
    assert bad.value.field == "channel" and bad.value.side == "input"
    assert hits["messages"] == 0
    assert API_KEY not in repr(conn)


def test_config_comes_from_the_environment_and_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIMPLE_CHAT_BASE_URL", "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="SIMPLE_CHAT_API_KEY"):
        simple_chat.connect()
    monkeypatch.setenv("SIMPLE_CHAT_API_KEY", "k")
    assert simple_chat.connect().integration is simple_chat


@SQLITE_ONLY
async def test_the_connector_webhook_starts_its_task_with_the_validated_payload(
    site: Site,
) -> None:
    worker = await site.worker(_registry("http://127.0.0.1:1")).register()
    options = simple_chat.webhook_options("message-received")
    assert options["event_name"] == "simple-chat.message-received"
    r = await site.api.post(
        "/api/v1/webhooks",
        json={
            "source": options["source"],
            "eventName": options["event_name"],
            "options": options["options"],
            "secret": "chat-signing",
        },
    )
    hook = r.json()

    def signed(body: bytes) -> dict[str, str]:
        sig = hmac.new(b"chat-signing", body, hashlib.sha256).hexdigest()
        return {"content-type": "application/json", "x-chat-signature": sig}

    good = json.dumps({"channel": "general", "user": "ada", "text": "hello"}).encode()
    ok = await site.public.post(hook["url"], content=good, headers=signed(good))
    assert ok.status_code == 200 and len(ok.json()["runs"]) == 1
    (done,) = await worker.run_until_idle()
    assert done.output == "ada in general: hello"
    bad = json.dumps({"channel": "general"}).encode()
    refused = await site.public.post(hook["url"], content=bad, headers=signed(bad))
    assert refused.status_code == 422 and "user" in refused.json()["error"]
    assert await site.run_count() == 1


# -- the shipped integrations ------------------------------------------------------------


def test_slack_posts_messages_and_reads_channels(
    service: tuple[str, Counter[str], list[dict[str, Any]]],
) -> None:
    url, _, sent = service
    conn = slack_kit.slack.connect({"bot_token": "xoxb-test", "base_url": f"{url}/slack"})
    posted = conn.send_message("k", {"channel": "C1", "text": "deployed"})
    assert posted == slack_kit.SentMessage(channel="C1", ts="1700000000.000100")
    assert sent == [{"channel": "C1", "text": "deployed"}]
    info = conn.get_channel_info("k", {"channel": "C1"})
    assert (info.found, info.name, info.member_count) == (True, "general", 123)
    assert conn.get_channel_info("k", {"channel": "C404"}).found is False
    other = slack_kit.slack.connect({"bot_token": "xoxb-bad", "base_url": f"{url}/slack"})
    with pytest.raises(slack_kit.SlackApiError, match="invalid_auth"):
        other.send_message("k", {"channel": "C1", "text": "x"})


@SQLITE_ONLY
async def test_a_slack_slash_command_starts_its_task(site: Site) -> None:
    registry = TaskRegistry()
    with collecting_into(registry):

        @slack_kit.slack.trigger("command", verifier=SlackVerifier(), retry=FAST)
        def on_command(payload: slack_kit.SlashCommand) -> str:
            return f"{payload.command} {payload.text} by {payload.user_id}"

    worker = await site.worker(registry).register()
    options = slack_kit.slack.webhook_options("command")
    hook = (
        await site.api.post(
            "/api/v1/webhooks",
            json={"source": "slack", "eventName": options["event_name"], "secret": "sl-sign"},
        )
    ).json()
    form = {"command": "/deploy", "text": "prod", "user_id": "U1", "channel_id": "C1"}
    body = urllib.parse.urlencode(form).encode()
    stamp = str(int(time.time()))
    sig = hmac.new(b"sl-sign", b"v0:" + stamp.encode() + b":" + body, hashlib.sha256)
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": f"v0={sig.hexdigest()}",
    }
    ok = await site.public.post(hook["url"], content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    (done,) = await worker.run_until_idle()
    assert done.output == "/deploy prod by U1"
    # Slack's URL verification: the challenge comes back, no event is sent
    challenge = json.dumps({"type": "url_verification", "challenge": "c-123"}).encode()
    sig = hmac.new(b"sl-sign", b"v0:" + stamp.encode() + b":" + challenge, hashlib.sha256)
    headers = {**headers, "content-type": "application/json"}
    headers["x-slack-signature"] = f"v0={sig.hexdigest()}"
    answered = await site.public.post(hook["url"], content=challenge, headers=headers)
    assert answered.json() == {"challenge": "c-123"}
    assert await site.run_count() == 1


def test_the_http_integration_calls_json_apis_and_fails_on_errors(
    service: tuple[str, Counter[str], list[dict[str, Any]]],
) -> None:
    url, _, _ = service
    api = http_json.connect({"base_url": url, "bearer_token": API_KEY})
    answer = api.request(
        "k", {"method": "POST", "path": "/messages", "json": {"channel": "c", "text": "t"}}
    )
    assert answer.status == 200 and answer.body == {"id": "msg-1"}
    with pytest.raises(Exception, match="404"):
        api.request("k", {"path": "/channels/nope"})
