"""Durable tasks for the end-to-end tests; side effects are counted in marks files."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from triggerfish import Context, retry, step, task, wait


def _mark(marks: str, name: str) -> None:
    folder = Path(marks)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / name).open("a") as fh:
        fh.write(f"{os.getpid()}\n")


def _effect(marks: str, i: int) -> int:
    """Step ``i``'s side effect; step 4 holds until the test drops a 'go' file."""
    _mark(marks, f"step-{i}")
    if i == 4:
        go = Path(marks) / "go"
        deadline = time.time() + 60
        while not go.exists() and time.time() < deadline:
            time.sleep(0.02)
    return i * 10


@task(id="five-steps", retry=retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
def five_steps(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    _mark(payload["marks"], "body")
    results = [step.run(f"step-{i}", _effect, payload["marks"], i) for i in range(1, 6)]
    return {"results": results, "attempt": ctx.attempt.number}


def _timed(marks: str, i: int, pause: float) -> int:
    """Step ``i``'s side effect: when it ran, then a pause (work between two writes)."""
    with (Path(marks) / f"step-{i}").open("a") as fh:
        fh.write(f"{time.time()}\n")
    time.sleep(pause)
    return i


@task(id="many-steps", retry=retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
def many_steps(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """One step, then a 'started' mark and a wait for the test's 'go' file, then
    ``steps`` more, each a journal write apart."""
    marks = payload["marks"]
    step.run("first", _mark, marks, "first")
    _mark(marks, f"started-{ctx.attempt.number}")
    go = Path(marks) / "go"
    deadline = time.time() + 60
    while not go.exists() and time.time() < deadline:
        time.sleep(0.02)
    steps = range(1, payload["steps"] + 1)
    results = [step.run(f"step-{i}", _timed, marks, i, payload["pause"]) for i in steps]
    return {"results": results, "attempt": ctx.attempt.number}


@task(id="five-steps-async", retry=retry(max_attempts=3, min_delay=0.05, max_delay=0.05))
async def five_steps_async(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    _mark(payload["marks"], "body")
    results = []
    for i in range(1, 6):
        results.append(await step.run(f"step-{i}", _effect, payload["marks"], i))
    return {"results": results, "attempt": ctx.attempt.number}


def _fails_until(marks: str, succeed_on: int) -> str:
    _mark(marks, "try")
    tries = len((Path(marks) / "try").read_text().splitlines())
    if tries < succeed_on:
        raise ConnectionError(f"try {tries} failed")
    return f"ok after {tries}"


@task(id="flaky-step", retry=retry(max_attempts=2, min_delay=0.01, max_delay=0.01))
def flaky_step(payload: dict[str, Any]) -> str:
    policy = retry(max_attempts=payload["tries"], min_delay=0.01, max_delay=0.01)
    return str(
        step.run("flaky", _fails_until, payload["marks"], payload["succeed_on"], retry=policy)
    )


def _marked(marks: str, name: str) -> str:
    _mark(marks, name)
    return name


@task(id="sleeps-durably", retry=retry(max_attempts=2, min_delay=0.05, max_delay=0.05))
def sleeps_durably(payload: dict[str, Any]) -> list[str]:
    _mark(payload["marks"], "body")
    before = step.run("before", _marked, payload["marks"], "before")
    wait.for_(seconds=payload["secs"])
    after = step.run("after", _marked, payload["marks"], "after")
    return [before, after]


@task(id="awaits-approval")
async def awaits_approval(payload: dict[str, Any]) -> dict[str, Any]:
    token = await wait.create_token(timeout="10m", tags=["approval"])
    result = await wait.for_token(token)
    return {"ok": result.ok, "output": result.output}


class Signup(BaseModel):
    email: str
    marks: str


@task(id="on-signup", on_event="user.signup")
def on_signup(payload: Signup) -> str:
    _mark(payload.marks, "signup")
    return payload.email
