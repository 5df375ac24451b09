"""The examples run: the AI-agent pipeline with real server and worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests import support
from tests.support import Stack

PIPELINE = Path(__file__).parents[2] / "examples" / "agent_pipeline"


def test_agent_pipeline_loops_until_checked_waits_for_approval_then_publishes(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    outbox = tmp_path / "published"
    worker = fresh_stack.worker(
        project=PIPELINE,
        extra_env={"FAKE_LLM_SECONDS": "0.01", "PIPELINE_OUTBOX": str(outbox)},
    )
    client = fresh_stack.client
    with support.processes_stopped(worker):
        handle = client.tasks.trigger("agent-pipeline", {"topic": "pricing page"})
        run = support.wait_for(
            lambda: (r := client.runs.retrieve(handle.id)).status == "WAITING" and r,
            timeout=60,
            what="the pipeline to wait for approval",
        )
        assert [s["name"] for s in run.steps] == [
            "design-1",
            "check-1",
            "design-2",
            "check-2",
            "token",
            "request-approval",
            "token",
        ]
        token = client.waitpoints.retrieve_token(run.waiting_for[0]["tokenId"])
        httpx.post(token.url, json={"approved": True, "reviewer": "qa"}).raise_for_status()
        done = client.runs.poll(handle.id, timeout=60, interval=0.05)
    assert done.status == "COMPLETED", done.error
    assert done.output["status"] == "published" and done.output["iterations"] == 2
    page = json.loads(Path(done.output["path"]).read_text())
    assert page["covers"] == ["pricing", "security"]
    # the model calls ran once each, although the task body ran twice
    logs = "\n".join(line.message for line in client.runs.logs(handle.id))
    assert logs.count("approve with:") == 1
