"""``directory-generation``: read the context, generate, post the commands back.

The worker needs two settings and no database: ``EVER_WORKS_API_URL`` (the
app) and ``TRIGGER_CALLBACK_SECRET`` (sent as ``x-trigger-secret``).
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from everworks.generation import generate
from triggerfish import callbacks, retry, step, task


class GenerationRequest(BaseModel):
    directoryId: str  # noqa: N815 (the app's JSON)


@task(id="directory-generation", retry=retry(max_attempts=3, min_delay=0.1, max_delay=1))
def directory_generation(payload: GenerationRequest) -> dict[str, int]:
    base = f"/internal/trigger/directories/{payload.directoryId}"
    with callbacks.client(os.environ["EVER_WORKS_API_URL"], scheme="header") as app:
        context = app.call("context", "GET", f"{base}/context")
        commands = step.run("generate", generate, context)
        app.call("commands", "POST", f"{base}/commands", json={"commands": commands})
    return {"commands": len(commands)}
