"""Random webhook deliveries (sources, delivery ids, repeats, forged signatures) against
the real store. Whatever the order: each distinct (event, delivery id) starts its
subscriber once, however many endpoints or repeats deliver it; every forged delivery
is refused and counted on its endpoint and leaves nothing else; every verified one is
recorded on its endpoint, as the first or as a redelivery."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, invariant, rule

from tests.support.machines import StoreMachine, run_machine_on
from triggerfish._domain.filters import RunFilter
from triggerfish.config import ServerSettings
from triggerfish.engine import Engine
from triggerfish.engine.resources import ManualClock
from triggerfish.errors import WebhookSignatureInvalid

SECRET = "machine-secret"
MANIFESTS = [
    {
        "id": task_id,
        "retry": {"max_attempts": 1},
        "machine": "micro",
        "queue": {"name": f"task/{task_id}", "concurrency_limit": None},
        "on_event": event,
    }
    for task_id, event in (("on-push", "github.push"), ("on-paid", "stripe.invoice.paid"))
]
EVENT_OF = {"github": "github.push", "stripe": "stripe.invoice.paid"}


class WebhookDeliveries(StoreMachine):
    endpoints = Bundle("endpoints")

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_000_000.0)
        self.engine = Engine.create(ServerSettings(database_url=self.db_url), clock=self.clock)
        self.run(self.engine.start(background=False))
        self.run(self.engine.environments.bootstrap())
        self.env_id = self.run(self.engine.environments.by_slug("dev")).id
        self.run(
            self.engine.workers.register(
                self.env_id, version="v1", name="w", concurrency=1, tasks=MANIFESTS
            )
        )
        self.sources: dict[str, str] = {}
        self.forged: Counter[str] = Counter()
        self.verified: Counter[str] = Counter()
        self.seen: set[tuple[str, str]] = set()

    def teardown(self) -> None:
        self.run(self.engine.close())
        self.release_store()

    @rule(target=endpoints, source=st.sampled_from(["github", "stripe"]))
    def create_endpoint(self, source: str) -> str:
        made = self.run(self.engine.webhooks.create(self.env_id, source, secret=SECRET))
        self.sources[made.endpoint.id] = source
        return made.endpoint.id

    @rule(endpoint=endpoints, delivery=st.sampled_from(["d1", "d2", "d3"]), forged=st.booleans())
    def deliver(self, endpoint: str, delivery: str, forged: bool) -> None:
        source = self.sources[endpoint]
        secret = "not-" + SECRET if forged else SECRET
        if source == "github":
            body = json.dumps({"ref": "main"}).encode()
            sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "x-github-event": "push",
                "x-github-delivery": delivery,
                "x-hub-signature-256": f"sha256={sig}",
                "content-type": "application/json",
            }
        else:
            body = json.dumps({"id": delivery, "type": "invoice.paid"}).encode()
            stamp = str(int(self.clock.now()))
            signed = f"{stamp}.".encode() + body
            sig = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
            headers = {"stripe-signature": f"t={stamp},v1={sig}"}
        try:
            received = self.run(self.engine.webhooks.receive(endpoint, headers, body))
        except WebhookSignatureInvalid:
            assert forged
            self.forged[endpoint] += 1
            return
        assert not forged
        self.verified[endpoint] += 1
        key = (EVENT_OF[source], delivery)
        assert received.is_redelivery == (key in self.seen)
        self.seen.add(key)

    @invariant()
    def runs_rejections_and_records_add_up(self) -> None:
        runs = self.run(
            self.engine.runs.page(self.env_id, RunFilter(), size=100, after=None, before=None)
        )[0]
        started = Counter(r.task_identifier for r in runs)
        assert started == Counter(
            "on-push" if name == "github.push" else "on-paid" for name, _ in self.seen
        )
        for endpoint in self.sources:
            shown = self.run(self.engine.webhooks.get(self.env_id, endpoint))
            assert shown.rejected_count == self.forged[endpoint]
            recorded = self.run(self.engine.webhooks.deliveries(self.env_id, endpoint, 500))
            assert len(recorded) == self.verified[endpoint]
        firsts = [
            d
            for e in self.sources
            for d in self.run(self.engine.webhooks.deliveries(self.env_id, e, 500))
            if d.outcome == "first"
        ]
        assert sorted((d.event_name, d.event_id) for d in firsts) == sorted(self.seen)


SETTINGS = settings(
    max_examples=3,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_webhook_deliveries_sqlite() -> None:
    run_machine_on(WebhookDeliveries, "sqlite", SETTINGS)


def test_webhook_deliveries_postgresql(pg_template: str) -> None:
    run_machine_on(WebhookDeliveries, "postgresql", SETTINGS, pg_template)
