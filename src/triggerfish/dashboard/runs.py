"""Runs: the list (filters, search, cursor pages, live rows) and one run's page and actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.states import FINAL, RunStatus
from triggerfish._validated import Id, Key, Name
from triggerfish.dashboard.trace import waterfall
from triggerfish.dashboard.web import (
    DashboardRoute,
    Page,
    action_page,
    back,
    checked,
    current_page,
    form_json,
    form_text,
)
from triggerfish.errors import TriggerfishError, UserError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)
PAGE_SIZE = 25
STATUSES = [s.value for s in RunStatus]
#: the query parameters of the list's filters, as the form names them
FILTERS = ("status", "task", "tag", "queue", "schedule", "batch", "from", "to", "q")


def _when(field: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise UserError(f"{field}: expected a date and time, got {value!r}") from None


def run_filter(request: Request) -> RunFilter:
    """The list's filters from the query string, each checked like the API's (the
    error names the field)."""
    q = request.query_params

    def one(name: str, kind: Any) -> str | None:
        value = q.get(name) or ""
        return checked(name, value, kind) if value else None

    status = q.get("status") or ""
    if status and status not in STATUSES:
        raise UserError(f"status: unknown status {status!r}")
    task, tag, queue = one("task", Name), one("tag", Name), one("queue", Name)
    return RunFilter(
        statuses=[status] if status else [],
        task_ids=[task] if task else [],
        tags=[tag] if tag else [],
        queues=[queue] if queue else [],
        schedule_id=one("schedule", Id),
        batch_id=one("batch", Id),
        created_from=_when("from", one("from", Name)),
        created_to=_when("to", one("to", Name)),
    )


async def _rows(page: Page) -> dict[str, Any]:
    q = page.request.query_params
    engine, env = page.engine, page.env
    after, before = q.get("after") or None, q.get("before") or None
    try:
        search = checked("q", (q.get("q") or "").strip(), Key) if q.get("q", "").strip() else ""
        flt = run_filter(page.request)
    except UserError as exc:
        return {"runs": [], "tags": {}, "reasons": {}, "next": None, "prev": None, "bad": str(exc)}
    if search:
        rows = await engine.runs.search(env.id, search)
        tags = {r.id: list(r.tags or []) for r in rows}
        more = False
    else:
        rows, tags, more = await engine.runs.page(
            env.id, flt, size=PAGE_SIZE, after=None if before else after, before=before
        )
    reasons = await engine.queues.explain(env.id, rows)
    kept = {k: q[k] for k in FILTERS if q.get(k)}
    nxt = prev = None
    if rows:
        if more or before:
            nxt = {**kept, "after": rows[-1].id}
        if after or (before and more):
            prev = {**kept, "before": rows[0].id}
    return {
        "runs": rows,
        "tags": tags,
        "reasons": reasons,
        "next": nxt,
        "prev": prev,
        "filters": kept,
        "bad": None,
        # only the first page follows new runs live; a page further back stays put
        "live": not after and not before,
    }


@router.get("/runs", response_class=HTMLResponse)
async def runs_list(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    live_after = await page.engine.changes.position()  # before reading: nothing slips between
    tasks = [t.id for t in await page.engine.workers.tasks(page.env.id)]
    q = page.request.query_params
    return page.render(
        "runs.html",
        **await _rows(page),
        statuses=STATUSES,
        tasks=tasks,
        q=q,
        live_after=live_after,
    )


@router.get("/runs/rows", response_class=HTMLResponse)
async def runs_rows(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    """The table body alone: what the live feed swaps in."""
    return page.render("_run_rows.html", **await _rows(page))


async def _detail(page: Page, run_id: str) -> dict[str, Any]:
    engine, env = page.engine, page.env
    detail = await engine.runs.retrieve(env.id, run_id)
    reasons = await engine.queues.explain(env.id, [detail.run])
    waiting = (
        (await engine.waitpoints.waiting_for([run_id]))[run_id]
        if detail.run.status == RunStatus.WAITING
        else []
    )
    logs = await engine.runs.logs(env.id, run_id, limit=1000)
    history = await engine.runs.events(env.id, run_id)
    # the trace the API serves (GET /api/v1/runs/{id}/trace), drawn as bars
    trace = await engine.traces.trace(env.id, run_id)
    return {
        "d": detail,
        "bars": waterfall(trace, engine.res.clock.now()),
        "run": detail.run,
        "reason": reasons.get(run_id),
        "waiting": waiting,
        "logs": logs,
        "history": history,
        "final": RunStatus(detail.run.status) in FINAL,
    }


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(run_id: str, page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    live_after = await page.engine.changes.position()  # before reading: nothing slips between
    try:
        values = await _detail(page, run_id)
    except TriggerfishError as exc:
        return page.render("not_found.html", status_code=404, message=str(exc))
    return page.render("run.html", **values, live_after=live_after)


@router.get("/runs/{run_id}/live", response_class=HTMLResponse)
async def run_live(run_id: str, page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    """The parts of a run's page that change while it runs (header, output, logs)."""
    return page.render("_run_live.html", **await _detail(page, run_id))


@router.post("/runs/{run_id}/cancel")
async def cancel(run_id: str, page: Annotated[Page, Depends(action_page)]) -> RedirectResponse:
    try:
        row = await page.engine.runs.cancel(page.env.id, run_id)
    except TriggerfishError as exc:
        return back(f"/runs/{run_id}", error=str(exc))
    return back(f"/runs/{run_id}", notice=f"run is {row.status}")


@router.post("/runs/{run_id}/replay")
async def replay(
    run_id: str, request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse:
    step_text = await form_text(request, "from_step", kind=Name)
    payload_text = await form_text(request, "payload")
    try:
        from_step = int(step_text) if step_text else None
    except ValueError:
        return back(f"/runs/{run_id}", error=f"from_step: expected a number, got {step_text!r}")
    overrides: dict[str, Any] = {}
    if payload_text:
        try:
            overrides["payload"] = form_json("payload", payload_text)
        except ValueError as exc:
            return back(f"/runs/{run_id}", error=f"payload: not JSON ({exc})")
    try:
        new_id = await page.engine.replays.replay(page.env.id, run_id, from_step, overrides)
    except TriggerfishError as exc:
        return back(f"/runs/{run_id}", error=str(exc))
    return back(f"/runs/{new_id}", notice=f"replay of {run_id}")


@router.post("/runs-bulk")
async def bulk(request: Request, page: Annotated[Page, Depends(action_page)]) -> RedirectResponse:
    """Cancel or replay the runs ticked in the list."""
    form = await request.form()
    ids = [v for v in form.getlist("run") if isinstance(v, str)]
    action = await form_text(request, "action")
    done = 0
    errors: list[str] = []
    for run_id in ids:
        try:
            if action == "cancel":
                await page.engine.runs.cancel(page.env.id, run_id)
            elif action == "replay":
                await page.engine.replays.replay(page.env.id, run_id)
            else:
                return back("/runs", error=f"action: unknown action {action!r}")
            done += 1
        except TriggerfishError as exc:
            errors.append(f"{run_id}: {exc}")
    if errors:
        return back("/runs", error=f"{action}: {done} done; " + "; ".join(errors[:3]))
    return back("/runs", notice=f"{action}: {done} runs")
