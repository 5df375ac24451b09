"""Runs: the list (filters, search, cursor pages, live rows) and one run's page and actions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.states import FINAL, RunStatus
from triggerfish._validated import BadInput, Id, Key, Name
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


def run_filter(q: Mapping[str, str]) -> RunFilter:
    """The list's filters (from the query string, or the bulk form), each checked
    like the API's (the error names the field)."""

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
        flt = run_filter(q)
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


# -- bulk actions -----------------------------------------------------------------------

BULK_ACTIONS = {"cancel": "Cancel", "replay": "Replay"}
#: runs acted on per transaction (cancel) or per page read (replay)
BULK_BATCH = 100
#: runs one request acts on; past it the answer offers to go on with the rest
BULK_PER_REQUEST = 1000
#: a count past this says "more than"
BULK_COUNT_CAP = 100_000
#: runs one request may tick
MAX_SELECTED = 1000


def _action(value: str) -> str:
    if value not in BULK_ACTIONS:
        raise BadInput(f"action: unknown action {value!r} (cancel or replay)")
    return value


async def _act(page: Page, action: str, ids: list[str], errors: list[str]) -> int:
    """Cancel (one transaction per batch) or replay ``ids``; how many it did."""
    engine, env_id = page.engine, page.env.id
    if action == "cancel":
        return await engine.runs.cancel_many(env_id, ids)
    done = 0
    for run_id in ids:
        try:
            await engine.replays.replay(env_id, run_id)
            done += 1
        except TriggerfishError as exc:
            errors.append(f"{run_id}: {exc}")
    return done


def _described(filters: Mapping[str, str]) -> str:
    words = {"q": "search", "from": "created from", "to": "created to"}
    shown = [f"{words.get(k, k)} {v.lower() if k == 'status' else v}" for k, v in filters.items()]
    return ", ".join(shown) if shown else "no filter: every run of the environment"


async def _confirm_page(
    page: Page,
    action: str,
    filters: dict[str, str],
    *,
    after: str | None = None,
    done: int = 0,
    errors: list[str] | None = None,
) -> HTMLResponse:
    """How many runs the filter matches (counted by the server) and a form to act on
    them: those matching now, up to the newest (``through``); a run created after
    this page is not touched."""
    engine, env_id = page.engine, page.env.id
    search = filters.get("q", "")
    if search:
        rows = await engine.runs.search(env_id, search)
        count, through = len(rows), (rows[0].id if rows else None)
    else:
        flt = run_filter(filters)
        count = await engine.runs.count(env_id, flt, cap=BULK_COUNT_CAP, below=after)
        newest, _tags, _more = await engine.runs.page(env_id, flt, size=1, after=after, before=None)
        through = newest[0].id if newest else None
    return page.render(
        "runs_bulk.html",
        action=action,
        verb=BULK_ACTIONS[action],
        filters=filters,
        described=_described(filters),
        count=count,
        more=count > BULK_COUNT_CAP,
        cap=BULK_COUNT_CAP,
        per_request=BULK_PER_REQUEST,
        through=through,
        after=after,
        done=done,
        errors=errors or [],
    )


def _kept(values: Mapping[str, str]) -> dict[str, str]:
    return {k: checked(k, v.strip()) for k, v in values.items() if k in FILTERS and v.strip()}


@router.get("/runs-bulk", response_class=HTMLResponse)
async def bulk_confirm(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    """The confirmation of a bulk action on every run matching the list's filters."""
    q = page.request.query_params
    return await _confirm_page(page, _action(q.get("action", "")), _kept(q))


@router.post("/runs-bulk", response_model=None)
async def bulk(
    request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse | HTMLResponse:
    """Cancel or replay the runs ticked in the list (``run`` fields), or every run
    matching the filters (``scope=filter``, after the confirmation page)."""
    form = await request.form()
    action = _action(await form_text(request, "action", kind=Name))
    if await form_text(request, "scope") == "filter":
        return await _bulk_filtered(request, page, action)
    ids = [checked("run", v, Id) for v in form.getlist("run") if isinstance(v, str)]
    if len(ids) > MAX_SELECTED:
        raise BadInput(f"run: at most {MAX_SELECTED} runs at once")
    errors: list[str] = []
    done = 0
    for start in range(0, len(ids), BULK_BATCH):
        done += await _act(page, action, ids[start : start + BULK_BATCH], errors)
    if errors:
        return back("/runs", error=f"{action}: {done} done; " + "; ".join(errors[:3]))
    return back("/runs", notice=f"{action}: {done} runs")


async def _bulk_filtered(
    request: Request, page: Page, action: str
) -> RedirectResponse | HTMLResponse:
    """Act on the runs the confirmation counted, newest first, in batches of
    :data:`BULK_BATCH`, at most :data:`BULK_PER_REQUEST` per request: past that the
    answer is the confirmation again for the rest."""
    form = await request.form()
    filters = _kept({k: v for k, v in form.items() if isinstance(v, str)})
    through = await form_text(request, "through", kind=Id) or None
    cursor = await form_text(request, "after", kind=Id) or None
    engine, env_id = page.engine, page.env.id
    errors: list[str] = []
    done = looked = 0
    if filters.get("q"):  # a search matches a handful of runs: no pages
        ids = [r.id for r in await engine.runs.search(env_id, filters["q"])]
        done = await _act(page, action, ids[:BULK_PER_REQUEST], errors)
        cursor = None
    else:
        flt = run_filter(filters)
        if cursor is None:
            if through is None:
                raise BadInput("through: missing: open the confirmation from the runs list")
            # the newest run the confirmation counted, then the older ones
            done += await _act(page, action, [through], errors)
            looked, cursor = 1, through
        more = True
        while more and looked < BULK_PER_REQUEST:
            size = min(BULK_BATCH, BULK_PER_REQUEST - looked)
            rows, _tags, more = await engine.runs.page(
                env_id, flt, size=size, after=cursor, before=None
            )
            if not rows:
                more = False
                break
            done += await _act(page, action, [r.id for r in rows], errors)
            looked += len(rows)
            cursor = rows[-1].id
        if not more:
            cursor = None
    if cursor is not None:  # more match: the confirmation for the rest
        return await _confirm_page(page, action, filters, after=cursor, done=done, errors=errors)
    query = urlencode(filters)
    target = "/runs" + (f"?{query}" if query else "")
    if errors:
        return back(target, error=f"{action}: {done} done; " + "; ".join(errors[:3]))
    return back(target, notice=f"{action}: {done} runs")
