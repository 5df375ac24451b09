"""Tasks of the realtime tests: a stream piped from a sync and an async iterable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from triggerfish import metadata, streams, task


def _words(n: int) -> Iterator[str]:
    for i in range(n):
        yield f"w{i} "


async def _awords(n: int) -> AsyncIterator[str]:
    for i in range(n):
        await asyncio.sleep(0)
        yield f"a{i} "


@task(id="stream-sync")
def stream_sync(payload: dict[str, Any]) -> str:
    metadata.set("phase", "streaming")
    return "".join(streams.pipe("llm", _words(int(payload.get("n", 5)))))


@task(id="stream-async")
async def stream_async(payload: dict[str, Any]) -> str:
    chunks = await metadata.stream("llm", _awords(int(payload.get("n", 5))))
    return "".join(chunks)


@task(id="realtime-steps")
async def realtime_steps(payload: dict[str, Any]) -> dict[str, Any]:
    """Metadata that grows a step at a time, with a pause between steps."""
    steps = list(payload.get("steps", ["fetch", "render", "upload"]))
    for step in steps:
        metadata.append("steps", step)
        await asyncio.sleep(float(payload.get("pause", 0.3)))
    return {"done": len(steps)}


@task(id="stream-slow")
async def stream_slow(payload: dict[str, Any]) -> str:
    """Pipes ``n`` chunks ``pause`` seconds apart: a reader sees them live."""

    async def tokens() -> AsyncIterator[str]:
        for i in range(int(payload.get("n", 10))):
            yield f"t{i} "
            await asyncio.sleep(float(payload.get("pause", 0.2)))

    chunks = await streams.pipe("llm", tokens())
    return "".join(chunks)
