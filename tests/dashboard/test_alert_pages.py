"""The alerts page: rules with their channel (a secret URL never shown whole), adding
and deleting rules with the page's CSRF token (a webhook rule's secret shown once),
and the recent deliveries with their status, tries and last error."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support.in_process import in_process_worker, trigger_run
from triggerfish import retry, task
from triggerfish.api.app import create_app
from triggerfish.engine import Engine
from triggerfish.engine.alerts import RuleSpec
from triggerfish.sdk._registry import TaskRegistry, collecting_into

SLACK = "https://hooks.slack.com/services/T000/B000/s3cr3tpart"


def _failing() -> TaskRegistry:
    registry = TaskRegistry()
    with collecting_into(registry):

        @task(id="doomed-job", retry=retry(max_attempts=1))
        def doomed_job(payload: Any) -> None:
            raise ValueError("boom")

    return registry


def _csrf(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_rules_and_their_deliveries(engine: Engine) -> None:
    env_id, worker = await in_process_worker(engine, _failing())

    async def refuse(channel: str, target: str, body: bytes, headers: dict[str, str]) -> None:
        raise RuntimeError("hooks.slack.com answered 503")

    engine.alerts.send = refuse
    rule, _ = await engine.alerts.add_rule(
        env_id, RuleSpec("slack failures", "RUN_FAILED", "SLACK", SLACK, {"tasks": []})
    )
    await engine.alerts.evaluate()  # starts watching
    await trigger_run(engine, env_id, "doomed-job")
    await worker.run_until_idle()
    assert await engine.alerts.evaluate() == 1
    assert await engine.alerts.deliver_due() == 0

    app = create_app(engine, manage_engine=False, dashboard_dev=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dashboard.test",
        follow_redirects=True,  # dev mode signs in with a redirect
    ) as http:
        page = await http.get("/alerts")
        assert page.status_code == 200
        assert 'href="/alerts"' in page.text  # in the nav
        row = page.text[page.text.index(f'id="rule-{rule["id"]}"') :]
        assert "slack failures" in row and "RUN_FAILED" in row and "SLACK" in row
        assert "https://hooks.slack.com/…" in row
        assert "s3cr3tpart" not in page.text
        deliveries = page.text[page.text.index("Recent deliveries") :]
        assert "PENDING" in deliveries and "slack failures" in deliveries
        assert "hooks.slack.com answered 503" in deliveries
        assert "<td>1</td>" in deliveries  # one try so far

        # a form without the page's token is refused
        refused = await http.post("/alerts", data={"name": "x", "kind": "RUN_FAILED"})
        assert refused.status_code == 403
        csrf = _csrf(page.text)
        made = await http.post(
            "/alerts",
            data={
                "csrf": csrf,
                "name": "slow queue",
                "kind": "QUEUE_AGE",
                "channel": "WEBHOOK",
                "target": "https://example.com/hooks/tf",
                "queue": "emails",
                "max_age": "300",
                "throttle": "600",
            },
        )
        assert made.status_code == 200
        secret = re.search(r'<pre id="new-secret">([^<]+)</pre>', made.text)
        assert secret is not None and len(secret.group(1)) >= 32
        (added,) = [r for r in await engine.alerts.rules(env_id) if r["name"] == "slow queue"]
        assert added["config"] == {"tasks": [], "queue": "emails", "max_age": 300.0}
        assert added["throttle"] == 600.0
        # shown once: the page afterwards has no secret
        assert secret.group(1) not in (await http.get("/alerts")).text

        bad = await http.post(
            "/alerts",
            data={
                "csrf": csrf,
                "name": "r",
                "kind": "FAILURE_RATE",
                "channel": "EMAIL",
                "target": "ops@example.com",
                "threshold": "lots",
            },
            follow_redirects=False,
        )
        assert bad.status_code == 303 and "threshold" in bad.headers["location"]

        gone = await http.post(
            f"/alerts/{added['id']}/delete", data={"csrf": csrf}, follow_redirects=False
        )
        assert gone.status_code == 303 and "notice=" in gone.headers["location"]
        assert [r["name"] for r in await engine.alerts.rules(env_id)] == ["slack failures"]
        missing = await http.post(
            f"/alerts/{added['id']}/delete", data={"csrf": csrf}, follow_redirects=False
        )
        assert "error=" in missing.headers["location"]
