"""Alerts: rules evaluated, deliveries signed (webhook), formatted (Slack), mailed
(a real SMTP server, aiosmtpd), throttled, retried after a failed send."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests import support
from tests.support.in_process import in_process_worker, trigger_run
from triggerfish import retry, task
from triggerfish.api.alerts import Channels
from triggerfish.engine import Engine
from triggerfish.engine.alerts import RuleSpec
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import UserError
from triggerfish.sdk._registry import TaskRegistry, collecting_into

#: a receiver refuses signatures older than this
TOLERANCE = 300


@dataclass
class Receiver:
    """A local webhook endpoint that checks the signature like a real receiver would."""

    secret: str = ""
    fail_next: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    now: float = 0.0

    def verify(self, header: str, body: bytes) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(","))
        stamp = parts["t"]
        expected = hmac.new(
            self.secret.encode(), f"{stamp}.{body.decode()}".encode(), hashlib.sha256
        ).hexdigest()
        fresh = abs(self.now - int(stamp)) <= TOLERANCE
        return fresh and hmac.compare_digest(expected, parts["v1"])


@contextmanager
def webhook_receiver() -> Iterator[tuple[str, Receiver]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signature = self.headers.get("X-Triggerfish-Signature")
            if self.path == "/hook" and not (signature and receiver.verify(signature, body)):
                receiver.refused.append(signature or "")
                self.send_response(401)
            elif receiver.fail_next:
                receiver.fail_next -= 1
                self.send_response(500)
            else:
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", receiver
    finally:
        server.shutdown()
        server.server_close()


def _failing() -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="flaky-job", retry=retry(max_attempts=1))
        def flaky_job(payload: Any) -> None:
            raise ValueError("boom")

        @task(id="fine-job", retry=retry(max_attempts=1))
        def fine_job(payload: Any) -> int:
            return 1

    return registry


async def test_a_failed_run_alerts_a_signed_webhook_throttled_and_retried(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker = await in_process_worker(engine, _failing())
    engine.alerts.send = Channels().send
    with webhook_receiver() as (url, receiver):
        rule, secret = await engine.alerts.add_rule(
            env_id,
            RuleSpec("failures", "RUN_FAILED", "WEBHOOK", f"{url}/hook", {"tasks": ["flaky-job"]}),
        )
        assert secret and rule["channel"] == "WEBHOOK"
        receiver.secret, receiver.now = secret, clock.now()
        await engine.alerts.evaluate()  # starts watching
        await trigger_run(engine, env_id, "fine-job")
        await trigger_run(engine, env_id, "flaky-job")
        await trigger_run(engine, env_id, "flaky-job")
        await worker.run_until_idle()
        assert await engine.alerts.evaluate() == 2  # two failures, one window
        receiver.fail_next = 1
        assert await engine.alerts.deliver_due() == 0  # the receiver answered 500
        (pending,) = await engine.alerts.deliveries(env_id)
        assert pending["status"] == "PENDING" and pending["attempts"] == 1
        assert "500" in pending["lastError"] and pending["count"] == 2
        assert await engine.alerts.deliver_due() == 0  # not due before its backoff
        clock.advance(seconds=10)
        receiver.now = clock.now()
        assert await engine.alerts.deliver_due() == 1
        (body,) = receiver.bodies
        assert body["rule"] == "failures" and body["count"] == 2
        assert body["task"] == "flaky-job" and body["status"] == "FAILED"
        (sent,) = await engine.alerts.deliveries(env_id)
        assert sent["status"] == "SENT" and sent["attempts"] == 2
        # a replayed delivery with an old timestamp is refused by the receiver
        await trigger_run(engine, env_id, "flaky-job")
        await worker.run_until_idle()
        clock.advance(seconds=400)  # the next throttle window
        receiver.now = clock.now() + TOLERANCE + 1
        await engine.alerts.evaluate()
        await engine.alerts.deliver_due()
        assert receiver.refused and len(receiver.bodies) == 1


async def test_slack_and_email_channels(engine: Engine, clock: ManualClock) -> None:
    env_id, worker = await in_process_worker(engine, _failing())
    engine.alerts.send = Channels().send
    mails: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mails.append(envelope)
            return "250 OK"

    port = support.free_port()
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        with webhook_receiver() as (url, receiver), _smtp_env(port):
            await engine.alerts.add_rule(
                env_id, RuleSpec("to slack", "RUN_FAILED", "SLACK", f"{url}/slack", {})
            )
            await engine.alerts.add_rule(
                env_id, RuleSpec("to mail", "RUN_FAILED", "EMAIL", "ops@example.com", {})
            )
            await engine.alerts.evaluate()
            await trigger_run(engine, env_id, "flaky-job")
            await worker.run_until_idle()
            await engine.alerts.evaluate()
            assert await engine.alerts.deliver_due() == 2
            (slack,) = receiver.bodies
            assert slack["text"].startswith("*to slack*: run of flaky-job ended FAILED")
            support.wait_for(lambda: mails, timeout=10, what="the alert email")
            (mail,) = mails
            assert mail.rcpt_tos == ["ops@example.com"]
            assert b"run of flaky-job ended FAILED" in mail.content
    finally:
        smtp.stop()


@contextmanager
def _smtp_env(port: int) -> Iterator[None]:
    import os

    saved = {k: os.environ.get(k) for k in ("TRIGGERFISH_SMTP_HOST", "TRIGGERFISH_SMTP_PORT")}
    os.environ.update({"TRIGGERFISH_SMTP_HOST": "127.0.0.1", "TRIGGERFISH_SMTP_PORT": str(port)})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def test_queue_age_no_worker_and_failure_rate_rules(
    engine: Engine, clock: ManualClock
) -> None:
    env_id, worker = await in_process_worker(engine, _failing())
    add = engine.alerts.add_rule
    await add(env_id, RuleSpec("old", "QUEUE_AGE", "SLACK", "http://x", {"max_age": 60}))
    await add(env_id, RuleSpec("orphan", "NO_WORKER", "SLACK", "http://x", {"tasks": ["nobody"]}))
    await add(
        env_id,
        RuleSpec("rate", "FAILURE_RATE", "SLACK", "http://x", {"threshold": 0.5, "window": 600}),
    )
    await engine.alerts.evaluate()
    kinds = {d["payload"]["kind"] for d in await engine.alerts.deliveries(env_id)}
    assert kinds == {"NO_WORKER"}
    await trigger_run(engine, env_id, "fine-job")
    clock.advance(seconds=120)
    await engine.alerts.evaluate()
    kinds = {d["payload"]["kind"] for d in await engine.alerts.deliveries(env_id)}
    assert "QUEUE_AGE" in kinds and "FAILURE_RATE" not in kinds
    await trigger_run(engine, env_id, "flaky-job")
    await worker.run_until_idle()
    await engine.alerts.evaluate()
    kinds = {d["payload"]["kind"] for d in await engine.alerts.deliveries(env_id)}
    assert "FAILURE_RATE" in kinds


async def test_a_bad_rule_is_refused_naming_the_field(engine: Engine) -> None:
    env_id, _ = await in_process_worker(engine, _failing())
    bad = [
        (RuleSpec("x", "NOPE", "SLACK", "http://x", {}), "kind"),
        (RuleSpec("x", "RUN_FAILED", "PIGEON", "http://x", {}), "channel"),
        (RuleSpec("x", "RUN_FAILED", "EMAIL", "not-an-address", {}), "target"),
        (RuleSpec("x", "QUEUE_AGE", "SLACK", "http://x", {}), "config.max_age"),
    ]
    for spec, field_name in bad:
        try:
            await engine.alerts.add_rule(env_id, spec)
        except UserError as exc:
            assert field_name in str(exc)
        else:
            raise AssertionError(f"{spec} was accepted")
    assert await engine.alerts.rules(env_id) == []
