"""``GET /live``: the change feed (``engine/changes.py``) as server-sent events for the
dashboard's pages.

Each event names a change (``id``, ``kind``, ``runId``) and nothing more: the
page fetches the fragment it shows again (``/runs/rows``, ``/runs/{id}/live``),
rendered by the server like the page itself. The browser's ``EventSource``
resumes from ``Last-Event-ID`` after a dropped connection, so no change is
missed; the page itself carries the feed's position when it was rendered
(``data-live-after``), so a change between rendering and connecting is not
missed either.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from triggerfish.dashboard.web import DashboardRoute, Page, current_page

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)
#: seconds between keep-alive comments while nothing changes (proxies drop idle streams)
KEEPALIVE = 15.0
#: a connection is closed after this long and the browser reconnects (from its last id):
#: no stream outlives a server's graceful shutdown by much
MAX_SECONDS = 300.0
#: what the run list follows; a run's page follows every kind of its run
LIST_KINDS = ("created", "status", "tags")


@router.get("/live")
async def live(request: Request, page: Annotated[Page, Depends(current_page)]) -> StreamingResponse:
    feed = page.engine.changes
    env_id = page.env.id
    run_id = request.query_params.get("run") or None
    kinds = None if run_id else LIST_KINDS
    # a reconnection resumes from its last event; a new page from where the feed
    # stood when the page was rendered (``after``), so nothing between is lost
    last = request.headers.get("last-event-id", "") or request.query_params.get("after", "")
    after = int(last) if last.isdigit() else await feed.position()
    loop_time = page.engine.res.clock.now

    async def events() -> AsyncIterator[str]:
        nonlocal after
        yield "retry: 1000\n\n"
        ends = loop_time() + MAX_SECONDS
        while loop_time() < ends and not await request.is_disconnected():
            batch, after = await feed.read_page(env_id, after, run_id=run_id, kinds=kinds)
            for change in batch:
                data = json.dumps({"id": change.id, "kind": change.kind, "runId": change.run_id})
                yield f"id: {change.id}\nevent: change\ndata: {data}\n\n"
            if batch:
                continue
            if not await feed.wait(after, timeout=KEEPALIVE):
                yield ": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
