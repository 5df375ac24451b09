"""Drive the pipeline against a running dev server, playing the human reviewer.

    cd examples/agent_pipeline
    triggerfish dev                      # in one terminal; prints the dev key
    python run.py "Triggerfish pricing page"   # in another

Reads TRIGGERFISH_API_URL (default http://127.0.0.1:3030) and
TRIGGERFISH_SECRET_KEY (default: the dev server's key file).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx

from triggerfish import Triggerfish


def main(topic: str) -> int:
    key = os.environ.get("TRIGGERFISH_SECRET_KEY")
    key_file = Path(".triggerfish") / "dev-secret-key"
    if not key and key_file.is_file():
        key = key_file.read_text().strip()
    client = Triggerfish(secret_key=key)
    handle = client.tasks.trigger("agent-pipeline", {"topic": topic})
    print(f"started {handle.id}")
    deadline = time.monotonic() + 120
    while True:
        run = client.runs.retrieve(handle.id)
        tokens = [w for w in run.waiting_for if w.get("type") == "TOKEN"]
        if run.status == "WAITING" and tokens:
            break
        if run.is_completed or time.monotonic() > deadline:
            print(f"run ended before asking for approval: {run.status} {run.output}")
            return 1
        time.sleep(0.2)
    steps = ", ".join(s["name"] for s in run.steps)
    print(f"waiting for approval (steps so far: {steps})")
    token = client.waitpoints.retrieve_token(tokens[0]["tokenId"])
    # the reviewer's approval: a plain POST to the token's URL, no SDK or key needed
    httpx.post(token.url, json={"approved": True, "reviewer": "run.py"}).raise_for_status()
    done = client.runs.poll(handle.id, timeout=120, interval=0.2)
    print(f"{done.status}: {done.output}")
    return 0 if done.status == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main(" ".join(sys.argv[1:]) or "Triggerfish"))
