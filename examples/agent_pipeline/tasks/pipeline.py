"""An AI-agent pipeline: designer → checker → loop until it passes → human approval → publish.

Each model call is a ``step.run``: it runs once, its result is journaled, and
a crash, a deploy or the wait for a human never makes it run (or bill) again.
The wait for approval suspends the run; no worker is busy while the reviewer
thinks, for minutes or days.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

from tasks.fake_llm import check, design
from triggerfish import Context, logger, retry, step, task, wait

#: where published pages go (a site generator's input folder in real life)
OUTBOX = Path(os.environ.get("PIPELINE_OUTBOX", ".triggerfish/published"))


class Brief(BaseModel):
    topic: str = Field(min_length=1)
    max_iterations: int = Field(default=4, ge=1, le=20)
    approval_timeout: str = "1d"


def request_approval(url: str, draft: dict) -> str:
    """Tell a reviewer how to approve (a chat message or an email in real life)."""
    body = json.dumps({"approved": True, "reviewer": "you"})
    logger.info("approval needed", url=url)
    print(f"review the draft: {draft['body']}")
    print(f"approve with:  curl -X POST {url} -H 'content-type: application/json' -d '{body}'")
    return url


def publish(draft: dict, run_id: str) -> str:
    """Write the page where a site generator would pick it up."""
    OUTBOX.mkdir(parents=True, exist_ok=True)
    path = OUTBOX / f"{run_id}.json"
    path.write_text(json.dumps(draft, indent=2))
    return str(path)


@task(id="agent-pipeline", retry=retry(max_attempts=3, min_delay=1, max_delay=10))
def agent_pipeline(brief: Brief, ctx: Context) -> dict:
    feedback: list[str] | None = None
    draft: dict | None = None
    iterations = 0
    for i in range(1, brief.max_iterations + 1):
        iterations = i
        draft = step.run(f"design-{i}", design, brief.topic, feedback)
        verdict = step.run(f"check-{i}", check, draft)
        logger.info("checked", iteration=i, passed=verdict["passed"])
        if verdict["passed"]:
            break
        feedback = verdict["feedback"]
    else:
        return {"status": "gave-up", "iterations": iterations, "missing": feedback}
    assert draft is not None
    token = wait.create_token(timeout=brief.approval_timeout, tags=["approval"])
    step.run("request-approval", request_approval, token.url, draft)
    decision = wait.for_token(token)
    if not decision.ok:
        return {"status": "approval-timed-out", "iterations": iterations}
    if not (decision.output or {}).get("approved"):
        return {"status": "rejected", "iterations": iterations, "by": decision.output}
    where = step.run("publish", publish, draft, ctx.run.id)
    return {"status": "published", "iterations": iterations, "path": where}
