"""``workflow-orchestrator``: designer → checker until it passes, then a PR; progress
callbacks to the app after each step (``CODECOURIER_APP_URL``, bearer
``TRIGGER_CALLBACK_SECRET``).

Every callback and every model call is a step: a retry or a crash replays
them from the journal and the app hears each one once.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from triggerfish import callbacks, retry, step, task


class Start(BaseModel):
    runId: str  # noqa: N815 (the app's JSON)
    goal: str = "add a pricing page"


def provision(run_id: str) -> str:
    return f"sandbox-{run_id}"


def designer(goal: str, feedback: str | None, iteration: int) -> dict[str, Any]:
    return {"iteration": iteration, "plan": goal, "addressed": feedback}


def checker(design: dict[str, Any], failures: int) -> dict[str, Any]:
    if design["iteration"] <= failures:
        return {"verdict": "fail", "feedback": f"fix issue {design['iteration']}"}
    return {"verdict": "pass", "feedback": ""}


def open_pr(run_id: str, design: dict[str, Any]) -> str:
    return f"https://git.example/pr/{run_id}-{design['iteration']}"


@task(id="workflow-orchestrator", retry=retry(max_attempts=2, min_delay=0.1, max_delay=1))
def orchestrator(payload: Start) -> dict[str, Any]:
    app = callbacks.client(os.environ["CODECOURIER_APP_URL"], scheme="bearer")
    run_id = payload.runId

    def progress(key: str, name: str, **detail: Any) -> None:
        app.callback(key, "progress", {"runId": run_id, "step": name, "detail": detail})

    config = app.callback("config", "getConfig", {"runId": run_id})
    sandbox = step.run("provision-sandbox", provision, run_id)
    progress("progress-provision", "provision", sandbox=sandbox)
    status, pr = "failed", None
    try:
        feedback: str | None = None
        for i in range(1, int(config["maxIterations"]) + 1):
            design = step.run(f"designer-{i}", designer, payload.goal, feedback, i)
            progress(f"progress-designer-{i}", "designer", iteration=i, feedback=feedback)
            verdict = step.run(f"checker-{i}", checker, design, int(config["checkerFailures"]))
            progress(f"progress-checker-{i}", "checker", iteration=i, verdict=verdict["verdict"])
            if verdict["verdict"] == "pass":
                break
            feedback = verdict["feedback"]
        pr = step.run("open-pr", open_pr, run_id, design)
        progress("progress-pr", "pr", url=pr)
        status = "completed"
    finally:
        step.run("kill-sandbox", lambda: f"killed {sandbox}")
        progress("progress-kill", "kill-sandbox")
        app.callback("complete", "complete", {"runId": run_id, "status": status, "pr": pr})
        app.close()
    return {"status": status, "pr": pr, "iterations": design["iteration"]}
