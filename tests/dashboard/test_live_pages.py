"""The home and queues pages' live parts, in process: what the change feed's events
make the browser fetch again (the browser test watches them change)."""

from __future__ import annotations

import re

import httpx

from tests.support.in_process import bare_worker
from triggerfish.api.app import create_app
from triggerfish.dashboard.queues import dom_id
from triggerfish.engine import Engine
from triggerfish.engine.enqueue import TriggerRequest


async def test_home_and_queue_counts_follow_the_store(engine: Engine) -> None:
    env = await engine.environments.by_slug("dev")
    await bare_worker(engine, env.id)
    app = create_app(engine, manage_engine=False, dashboard_dev=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://dashboard.test",
        follow_redirects=True,
    ) as http:
        await engine.enqueue.trigger(env.id, TriggerRequest("t", {}))
        page = await http.get("/queues")
        # the page follows the feed from where it stood when rendered
        position = await engine.changes.position()
        assert f'data-live-after="{position}" data-live-src="/queues/counts"' in page.text
        queued = f'id="{dom_id("task/t")}-queued"'
        assert re.search(queued + r"[^>]*>1<", page.text)

        for _ in range(2):
            await engine.enqueue.trigger(env.id, TriggerRequest("t", {}))
        counts = await http.get("/queues/counts")
        # out-of-band parts only: the cells' ids, never the forms
        assert re.search(
            queued + r' class="count" data-count="queued" hx-swap-oob="true">3<', counts.text
        )
        assert "<form" not in counts.text

        home = await http.get("/")
        assert 'data-live-src="/home/live" data-live-every="10"' in home.text
        live = await http.get("/home/live")
        assert '<p class="big" data-count="waiting">3</p>' in live.text
        assert '<tr data-queue="task/t"><td>task/t</td><td data-count="running">0</td>' in (
            live.text
        )
        assert "<html" not in live.text  # a fragment
