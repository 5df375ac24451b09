"""The app side: ``POST /trigger/callback`` with ``{operation, args}`` and a bearer secret.

The orchestrator task asks it for the run's configuration, reports progress
after each step and says how the run ended; the app keeps the run's record
(in memory here). A wrong secret gets 401 and changes nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from triggerfish import callbacks


class Callback(BaseModel):
    operation: str
    args: dict[str, Any] = {}


@dataclass
class AppRun:
    id: str
    max_iterations: int = 5
    #: the fake checker fails this many times before it passes
    checker_failures: int = 0
    status: str = "started"
    progress: list[dict[str, Any]] = field(default_factory=list)
    pr: str | None = None


@dataclass
class Runs:
    runs: dict[str, AppRun] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def create_app(runs: Runs, *, callback_secret: str) -> FastAPI:
    app = FastAPI(title="CodeCourier (example)")
    verifier = callbacks.CallbackVerifier(callback_secret, scheme="bearer")
    guard = [Depends(callbacks.fastapi_dependency(verifier))]
    #: the check of callbacks (a test rotates its secret to see a mismatch refused)
    app.state.verifier = verifier

    def run_of(args: dict[str, Any]) -> AppRun:
        found = runs.runs.get(str(args.get("runId")))
        if found is None:
            raise HTTPException(404, f"no run {args.get('runId')!r}")
        return found

    @app.post("/trigger/callback", dependencies=guard)
    def callback(body: Callback) -> dict[str, Any]:
        with runs.lock:
            run = run_of(body.args)
            if body.operation == "getConfig":
                return {
                    "maxIterations": run.max_iterations,
                    "checkerFailures": run.checker_failures,
                }
            if body.operation == "progress":
                run.progress.append({"step": body.args["step"], **body.args.get("detail", {})})
                run.status = "running"
                return {"ok": True}
            if body.operation == "complete":
                run.status, run.pr = body.args["status"], body.args.get("pr")
                return {"ok": True}
        raise HTTPException(400, f"operation: unknown operation {body.operation!r}")

    return app
