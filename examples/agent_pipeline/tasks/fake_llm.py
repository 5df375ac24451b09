"""A stand-in for an LLM: deterministic, a little slow, and wrong at first.

The designer writes a draft about the topic and folds in the checker's
feedback; the checker wants every required point covered. With two required
points the first draft fails, the second passes, so the loop is exercised
without a network or an API key. ``FAKE_LLM_SECONDS`` sets the latency.
"""

from __future__ import annotations

import os
import time

REQUIRED_POINTS = ("pricing", "security")


def _think() -> None:
    time.sleep(float(os.environ.get("FAKE_LLM_SECONDS", "0.2")))


def design(topic: str, feedback: list[str] | None) -> dict:
    """Write a draft; covers the points the checker asked for last time."""
    _think()
    covered = sorted(set(feedback or []))
    body = f"A page about {topic}."
    for point in covered:
        body += f" It explains {point}."
    return {"topic": topic, "body": body, "covers": covered}


def check(draft: dict) -> dict:
    """Pass when every required point is covered; otherwise say what is missing."""
    _think()
    missing = [p for p in REQUIRED_POINTS if p not in draft["covers"]]
    return {"passed": not missing, "feedback": missing}
