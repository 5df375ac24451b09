"""Tasks that act with their attempt's credential, and one that inspects its own process."""

from __future__ import annotations

import os
import re
import sys
import uuid
from typing import Any

import triggerfish
from triggerfish import Context, task

from .basics import sync_hello

#: what a leaked secret looks like: an API key, or a value the test marked secret
_SECRET_SHAPES = re.compile(rb"tr_[a-z0-9-]+_[A-Za-z0-9_]{16,}|tfsecret-[0-9a-f]{32}")


def _writable_memory() -> list[bytes]:
    """Every readable, writable mapping of this process (heap, stacks, data)."""
    chunks = []
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("rw") or fields[-1] in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, ValueError, OverflowError):
                continue  # a guard page or a mapping that went away
    return chunks


@task(id="inspect-process")
def inspect_process(payload: dict[str, Any]) -> dict[str, Any]:
    """What of the worker's secrets this task process could find, anywhere it can look."""
    probe = ("tfsecret-" + uuid.uuid4().hex).encode()  # the scan must find this one
    found = {m.decode() for chunk in _writable_memory() for m in _SECRET_SHAPES.findall(chunk)}
    return {
        "environ": dict(os.environ),
        "argv": list(sys.argv),
        "found": sorted(found - {probe.decode()}),
        "scan_works": probe.decode() in found,
    }


@task(id="trigger-from-task")
def trigger_from_task(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Triggers other tasks without waiting, and reads runs, with no key of its own."""
    one = sync_hello.trigger({"who": "task"})
    two = triggerfish.tasks.trigger("sync-hello", {"who": "by id"})
    batch = triggerfish.tasks.batch_trigger(
        [{"task": "sync-hello", "payload": {"who": f"batch {i}"}} for i in range(2)]
    )
    me = triggerfish.runs.retrieve(ctx.run.id)
    return {
        "runs": [one.id, two.id, *batch.run_ids],
        "batch": batch.id,
        "me": me.status,
        "listed": len(triggerfish.runs.list(task="sync-hello").data),
    }


@task(id="trigger-from-async-task")
async def trigger_from_async_task(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The same from an ``async def`` task, through the async client."""
    one = await sync_hello.trigger_async({"who": "async task"})
    two = await triggerfish.tasks.trigger_async("sync-hello", {"who": "async by id"})
    batch = await triggerfish.tasks.batch_trigger_async(
        [{"task": "sync-hello", "payload": {"who": "async batch"}}]
    )
    me = await triggerfish.runs.retrieve_async(ctx.run.id)
    return {"runs": [one.id, two.id, *batch.run_ids], "batch": batch.id, "me": me.status}


@task(id="read-env")
def read_env(payload: dict[str, Any]) -> dict[str, Any]:
    """A variable of the environment as the attempt starts, and again after ``release``
    appears in kv (when ``hold`` names it): a change meanwhile must not show."""
    import time

    name = payload["name"]
    first = os.environ.get(name)
    hold = payload.get("hold")
    if hold:
        deadline = time.monotonic() + 60
        while triggerfish.kv.get(hold) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    return {"first": first, "second": os.environ.get(name)}
