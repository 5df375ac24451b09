"""Alert rules over HTTP and the CLI."""

from __future__ import annotations

import asyncio

from tests import support
from tests.api.conftest import Served


async def test_alert_rules_over_http(served: Served) -> None:
    http = served.http
    bad = await http.post(
        "/api/v1/alerts",
        json={"name": "x", "kind": "RUN_FAILED", "channel": "EMAIL", "target": "nope"},
    )
    assert bad.status_code in (400, 422) and "target" in bad.text
    ok = await http.post(
        "/api/v1/alerts",
        json={
            "name": "hook",
            "kind": "run_failed",
            "channel": "webhook",
            "target": "http://127.0.0.1:9/hook",
            "config": {"tasks": ["job"]},
        },
    )
    assert ok.status_code == 200, ok.text
    rule = ok.json()
    assert rule["kind"] == "RUN_FAILED" and len(rule["secret"]) > 20
    listed = (await http.get("/api/v1/alerts")).json()["data"]
    assert [r["id"] for r in listed] == [rule["id"]] and "secret" not in listed[0]
    assert (await http.get("/api/v1/alerts/deliveries")).json() == {"data": []}
    env = {"TRIGGERFISH_API_URL": served.url, "TRIGGERFISH_SECRET_KEY": served.key}
    added = await asyncio.to_thread(
        support.cli,
        "alerts",
        "add",
        "slow queue",
        "--kind",
        "QUEUE_AGE",
        "--channel",
        "slack",
        "--target",
        "http://127.0.0.1:9/s",
        "--max-age",
        "60",
        env=env,
    )
    assert added.returncode == 0 and "added alert rule" in added.stdout, added.stderr
    gone = await http.delete(f"/api/v1/alerts/{rule['id']}")
    assert gone.status_code == 200
    assert len((await http.get("/api/v1/alerts")).json()["data"]) == 1
