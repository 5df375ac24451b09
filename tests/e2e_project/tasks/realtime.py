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
