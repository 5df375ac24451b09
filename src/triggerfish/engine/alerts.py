"""Alerts: rules per environment, evaluated by every server's loop; each alert is a
durable delivery, retried with backoff, throttled per rule.

Rule kinds (``config`` keys in brackets):

- ``RUN_FAILED``: a run reached a failed final status [``tasks``: empty = all];
- ``FAILURE_RATE``: failed / finished runs over the last ``window`` seconds at or
  above ``threshold`` (0..1), once ``min_runs`` finished [``tasks``];
- ``QUEUE_AGE``: the oldest queued run [of ``queue``] is older than ``max_age`` s;
- ``NO_WORKER``: no online worker declares one of ``tasks``;
- ``WORKER_LOST``: a worker stopped heartbeating without stopping.

Channels: ``WEBHOOK`` (JSON, signed: ``X-Triggerfish-Signature: t=<unix
seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the rule's secret, which
the keyring keeps sealed and signs with; receivers check the signature and
refuse old timestamps), ``SLACK`` (an incoming webhook's ``{"text": …}``) and
``EMAIL`` (SMTP, ``TRIGGERFISH_SMTP_*`` settings). One delivery per rule and
throttle window (``dedup_key``); occurrences inside the window add to its
``count``. A failed send is retried with exponential backoff up to
``MAX_DELIVERY_ATTEMPTS`` times, then marked ``FAILED``. Every replica
evaluates: the unique ``dedup_key`` keeps one delivery per window.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from triggerfish._domain.records import AlertDeliveryRecord, AlertRuleRecord, DueAlert
from triggerfish._domain.times import iso_from_epoch, to_datetime
from triggerfish._ids import new_id
from triggerfish.engine.failure_log import FailureLog
from triggerfish.engine.resources import EngineResources
from triggerfish.errors import UserError
from triggerfish.store import alerts as alert_store
from triggerfish.store import metrics as metric_store
from triggerfish.store.horizon import Horizon

log = logging.getLogger("triggerfish.alerts")

KINDS = ("RUN_FAILED", "FAILURE_RATE", "QUEUE_AGE", "NO_WORKER", "WORKER_LOST")
CHANNELS = ("WEBHOOK", "SLACK", "EMAIL")
MAX_DELIVERY_ATTEMPTS = 6
#: seconds before the n-th retry: BACKOFF * 4**(n-1), at most an hour
BACKOFF = 5.0
_SECRET_PURPOSE = "alert-webhook-secret"
_FAILED = frozenset({"FAILED", "CRASHED", "TIMED_OUT", "SYSTEM_FAILURE"})

#: sends one alert: (channel, target, body, headers); raises when it was not taken
Sender = Callable[[str, str, bytes, dict[str, str]], Awaitable[None]]


@dataclass(frozen=True)
class RuleSpec:
    name: str
    kind: str
    channel: str
    target: str
    config: dict[str, Any]
    throttle: float = 300.0


class Alerts:
    def __init__(self, res: EngineResources, history: Horizon) -> None:
        self.res = res
        #: the horizon of the history's ids, shared with the server's other walks of it
        self.history = history
        self._watermark: int | None = None
        self.send: Sender | None = None
        self._failures = FailureLog(log, "alert evaluation")

    # -- rules ---------------------------------------------------------------------

    async def add_rule(self, env_id: str, spec: RuleSpec) -> tuple[dict[str, Any], str | None]:
        """Store a rule; its row, and for a webhook its signing secret (shown once)."""
        _check(spec)
        secret = secrets.token_urlsafe(32) if spec.channel == "WEBHOOK" else None
        now = self.res.clock.now()
        rule = AlertRuleRecord(
            id=new_id("alert", now),
            environment_id=env_id,
            name=spec.name,
            kind=spec.kind,
            config=spec.config,
            channel=spec.channel,
            target=spec.target,
            secret_sealed=(
                self.res.keyring.encrypt(_SECRET_PURPOSE, secret.encode()) if secret else None
            ),
            throttle=spec.throttle,
            created_at=to_datetime(now),
        )
        async with self.res.db.write() as conn:
            await alert_store.insert_rule(conn, rule)
        return _rule_view(rule), secret

    async def rules(self, env_id: str) -> list[dict[str, Any]]:
        async with self.res.db.read() as conn:
            return [_rule_view(rule) for rule in await alert_store.rules(conn, env_id)]

    async def delete_rule(self, env_id: str, rule_id: str) -> bool:
        async with self.res.db.write() as conn:
            return await alert_store.delete_rule(conn, env_id, rule_id)

    async def deliveries(self, env_id: str, limit: int = 100) -> list[dict[str, Any]]:
        async with self.res.db.read() as conn:
            found = await alert_store.deliveries(conn, env_id, limit)
        return [_delivery_view(d) for d in found]

    # -- evaluation ----------------------------------------------------------------

    async def evaluate(self) -> int:
        """Check every rule once; how many alerts were raised (new or counted in)."""
        now = self.res.clock.now()
        async with self.res.db.read() as conn:
            rules = await alert_store.rules(conn)
        if not rules:  # nothing to watch: start the history walk afresh later
            self._watermark = None
            return 0
        # up to the horizon: a failure that commits after a later row is not skipped
        upto = await self.history.current()
        history: list[metric_store.HistoryRow] = []
        if self._watermark is None:
            self._watermark = upto
        elif upto > self._watermark:
            async with self.res.db.read() as conn:
                history = await metric_store.history_since(conn, self._watermark, upto, 5000)
        if history:
            self._watermark = history[-1].id
        failed = [h for h in history if h.to_status in _FAILED]
        raised = 0
        for rule in rules:
            for payload in await self._occurrences(rule, now, failed):
                raised += await self._raise(rule, now, payload)
        return raised

    async def _occurrences(
        self, rule: AlertRuleRecord, now: float, failed: list[metric_store.HistoryRow]
    ) -> list[dict[str, Any]]:
        cfg: dict[str, Any] = rule.config or {}
        tasks = list(cfg.get("tasks") or [])
        env = rule.environment_id
        base = {"rule": rule.name, "ruleId": rule.id, "kind": rule.kind, "at": iso_from_epoch(now)}
        if rule.kind == "RUN_FAILED":
            return [
                {
                    **base,
                    "summary": f"run of {h.task} ended {h.to_status}",
                    "task": h.task,
                    "status": h.to_status,
                    "environment": h.env,
                }
                for h in failed
                if h.env_id == env and (not tasks or h.task in tasks)
            ]
        async with self.res.db.read() as conn:
            if rule.kind == "FAILURE_RATE":
                window = float(cfg.get("window", 3600))
                since = to_datetime(now - window)
                total, bad = await alert_store.finished_counts(conn, env, since, tasks)
                rate = bad / total if total else 0.0
                if total >= int(cfg.get("min_runs", 1)) and rate >= float(cfg["threshold"]):
                    return [
                        {
                            **base,
                            "summary": f"{bad} of {total} runs failed in {window:g}s",
                            "failureRate": round(rate, 4),
                        }
                    ]
            elif rule.kind == "QUEUE_AGE":
                oldest = await alert_store.oldest_queued(conn, env, cfg.get("queue"))
                if oldest is not None:
                    age = now - oldest.replace(tzinfo=UTC).timestamp()
                    if age > float(cfg["max_age"]):
                        where = cfg.get("queue") or "a queue"
                        return [{**base, "summary": f"oldest run in {where} waited {age:.0f}s"}]
            elif rule.kind == "NO_WORKER":
                seen = now - self.res.settings.heartbeat_timeout
                live = await alert_store.live_workers(conn, env, seen)
                served = {
                    t if isinstance(t, str) else t.get("id") for w in live for t in (w.tasks or [])
                }
                missing = [t for t in tasks if t not in served]
                if missing:
                    return [{**base, "summary": f"no worker online for {', '.join(missing)}"}]
            elif rule.kind == "WORKER_LOST":
                before = now - self.res.settings.heartbeat_timeout
                lost = await alert_store.lost_workers(conn, env, before)
                return [
                    {**base, "summary": f"worker {w.name} stopped heartbeating", "worker": w.id}
                    for w in lost
                ]
        return []

    async def _raise(self, rule: AlertRuleRecord, now: float, payload: dict[str, Any]) -> int:
        window = int(now // max(rule.throttle, 1.0))
        delivery = AlertDeliveryRecord(
            id=new_id("alertdelivery", now),
            environment_id=rule.environment_id,
            rule_id=rule.id,
            dedup_key=f"{rule.id}:{window}",
            status="PENDING",
            payload=payload,
            count=1,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            created_at=to_datetime(now),
            sent_at=None,
        )
        async with self.res.db.write() as conn:
            await alert_store.raise_alert(conn, delivery)
        return 1

    # -- delivery ------------------------------------------------------------------

    async def deliver_due(self) -> int:
        """Send what is due; how many were sent."""
        if self.send is None:
            return 0
        now = self.res.clock.now()
        async with self.res.db.read() as conn:
            due = await alert_store.due_deliveries(conn, now, 50)
        sent = 0
        for d in due:
            body, headers = self._message(d, now)
            attempts = d.delivery.attempts + 1
            try:
                await self.send(d.rule.channel, d.rule.target, body, headers)
            except Exception as exc:
                gave_up = attempts >= MAX_DELIVERY_ATTEMPTS
                delay = min(3600.0, BACKOFF * 4 ** (attempts - 1))
                async with self.res.db.write() as conn:
                    await alert_store.delivery_done(
                        conn,
                        d.delivery.id,
                        status="FAILED" if gave_up else "PENDING",
                        attempts=attempts,
                        next_attempt_at=None if gave_up else now + delay,
                        error=f"{type(exc).__name__}: {exc}"[:500],
                        sent_at=None,
                    )
                continue
            sent += 1
            async with self.res.db.write() as conn:
                await alert_store.delivery_done(
                    conn,
                    d.delivery.id,
                    status="SENT",
                    attempts=attempts,
                    next_attempt_at=None,
                    error=None,
                    sent_at=to_datetime(self.res.clock.now()),
                )
        return sent

    def _message(self, due: DueAlert, now: float) -> tuple[bytes, dict[str, str]]:
        d, rule = due.delivery, due.rule
        payload = {**d.payload, "count": d.count, "deliveryId": d.id}
        if rule.channel == "SLACK":
            text = f"*{payload['rule']}*: {payload.get('summary', payload['kind'])}"
            if d.count > 1:
                text += f" ({d.count} times in this window)"
            return json.dumps({"text": text}).encode(), {"Content-Type": "application/json"}
        body = json.dumps(payload, sort_keys=True).encode()
        headers = {"Content-Type": "application/json"}
        if rule.channel == "WEBHOOK" and rule.secret_sealed:
            stamp = str(int(now))
            mac = self.res.keyring.sign_for_receiver(
                _SECRET_PURPOSE, rule.secret_sealed, f"{stamp}.{body.decode()}"
            )
            headers["X-Triggerfish-Signature"] = f"t={stamp},v1={mac}"
        return body, headers

    async def tick(self) -> bool:
        """One pass of the loop: evaluate the rules, send what is due; whether it
        worked. Failures are logged sparingly (``engine/failure_log.py``): during a
        database outage every pass fails."""
        try:
            await self.evaluate()
            await self.deliver_due()
        except Exception as exc:
            self._failures.failed(self.res.clock.now(), exc)
            return False
        self._failures.succeeded(self.res.clock.now())
        return True

    async def run_forever(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.res.settings.maintenance_interval)


def _rule_view(rule: AlertRuleRecord) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "kind": rule.kind,
        "channel": rule.channel,
        "target": rule.target,
        "config": rule.config,
        "throttle": rule.throttle,
    }


def _delivery_view(d: AlertDeliveryRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "ruleId": d.rule_id,
        "status": d.status,
        "count": d.count,
        "attempts": d.attempts,
        "lastError": d.last_error,
        "payload": d.payload,
        "createdAt": d.created_at.isoformat() + "Z",
        "sentAt": d.sent_at.isoformat() + "Z" if d.sent_at else None,
    }


def _check(spec: RuleSpec) -> None:
    if spec.kind not in KINDS:
        raise UserError(f"kind: one of {', '.join(KINDS)}")
    if spec.channel not in CHANNELS:
        raise UserError(f"channel: one of {', '.join(CHANNELS)}")
    if spec.channel in ("WEBHOOK", "SLACK") and not spec.target.startswith(("http://", "https://")):
        raise UserError("target: an http(s) URL for a webhook or Slack channel")
    if spec.channel == "EMAIL" and "@" not in spec.target:
        raise UserError("target: an email address")
    if spec.throttle <= 0:
        raise UserError("throttle: seconds, more than 0")
    cfg = spec.config
    if not isinstance(cfg.get("tasks", []), list):
        raise UserError("config.tasks: a list of task ids")
    needed = {"FAILURE_RATE": "threshold", "QUEUE_AGE": "max_age"}.get(spec.kind)
    if needed and not isinstance(cfg.get(needed), int | float):
        raise UserError(f"config.{needed}: a number")
    if spec.kind == "NO_WORKER" and not cfg.get("tasks"):
        raise UserError("config.tasks: the tasks that need a worker")
