"""Tasks: what workers registered, and a Test form that triggers one with a JSON payload."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from triggerfish._domain.filters import RunFilter
from triggerfish._domain.states import FINAL, RunStatus
from triggerfish._validated import Name
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
from triggerfish.engine.enqueue import TriggerRequest
from triggerfish.errors import TriggerfishError

router = APIRouter(include_in_schema=False, route_class=DashboardRoute)
#: runs looked at for a task's recent counts and failure rate
RECENT = 50
_FAILED = {RunStatus.FAILED, RunStatus.CRASHED, RunStatus.TIMED_OUT, RunStatus.SYSTEM_FAILURE}


def example_from_schema(schema: dict[str, Any] | None, root: dict[str, Any] | None = None) -> Any:
    """An example value for a JSON Schema (a pydantic model's): its examples and
    defaults where given, else the simplest value of each type.

    >>> example_from_schema({"type": "object", "properties": {"n": {"type": "integer"}}})
    {'n': 0}
    """
    if not schema:
        return {}
    root = root or schema
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return example_from_schema(root.get("$defs", {}).get(name, {}), root)
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return example_from_schema(options[0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: example_from_schema(sub, root) for name, sub in props.items()}
    simple: dict[str, Any] = {
        "string": "",
        "integer": 0,
        "number": 0,
        "boolean": False,
        "array": [],
        "null": None,
    }
    return simple.get(str(kind))


async def _recent(page: Page, task_id: str) -> dict[str, Any]:
    rows, _tags, _more = await page.engine.runs.page(
        page.env.id, RunFilter(task_ids=[task_id]), size=RECENT, after=None, before=None
    )
    finished = [r for r in rows if RunStatus(r.status) in FINAL]
    failed = [r for r in finished if RunStatus(r.status) in _FAILED]
    return {
        "runs": len(rows),
        "failed": len(failed),
        "rate": (len(failed) / len(finished)) if finished else None,
    }


@router.get("/tasks", response_class=HTMLResponse)
async def tasks_page(page: Annotated[Page, Depends(current_page)]) -> HTMLResponse:
    tasks = await page.engine.workers.tasks(page.env.id)
    online = await page.engine.workers.online_rows(page.env.id)
    serving = {
        t: [w.version for w in online if t in (w.tasks or [])] for t in (x.id for x in tasks)
    }
    recent = {t.id: await _recent(page, t.id) for t in tasks}
    import_errors = await page.engine.workers.import_errors(page.env.id)
    return page.render(
        "tasks.html", tasks=tasks, serving=serving, recent=recent, import_errors=import_errors
    )


@router.get("/tasks/{task_id:path}/test", response_class=HTMLResponse, response_model=None)
async def test_form(task_id: str, page: Annotated[Page, Depends(current_page)]) -> Response:
    tasks = {t.id: t for t in await page.engine.workers.tasks(page.env.id)}
    task = tasks.get(task_id)
    if task is None:
        return page.render("not_found.html", status_code=404, message=f"no task {task_id!r}")
    manifest = task.manifest
    if manifest.get("schedule"):
        now = page.engine.res.clock.now()
        example: Any = {"timestamp": now, "lastTimestamp": None, "timezone": "UTC"}
    else:
        example = example_from_schema(manifest.get("payload_schema"))
    payload = page.request.query_params.get("payload") or json.dumps(example, indent=2)
    return page.render("task_test.html", task=task, payload=payload)


@router.post("/tasks/{task_id:path}/test")
async def test_run(
    task_id: str, request: Request, page: Annotated[Page, Depends(action_page)]
) -> RedirectResponse:
    text = await form_text(request, "payload")
    form = f"/tasks/{task_id}/test"
    try:
        payload = form_json("payload", text or "null")
    except ValueError as exc:
        return back(form, error=f"payload: not JSON ({exc})")
    tags = [
        checked("tags", t.strip(), Name)
        for t in (await form_text(request, "tags")).split(",")
        if t.strip()
    ]
    try:
        result = await page.engine.enqueue.trigger(
            page.env.id, TriggerRequest(task_id, payload, tags=tags, is_test=True)
        )
    except TriggerfishError as exc:
        return back(form, error=str(exc))
    return back(f"/runs?task={task_id}", notice=f"started {result.id}")
