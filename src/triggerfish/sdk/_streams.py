"""``streams``: pipe what a task produces (LLM tokens, progress lines) to the run's
subscribers as it comes, and keep all of it with the run.

Inside a task::

    from triggerfish import streams, task

    @task(id="chat")
    def chat(payload: dict) -> str:
        tokens = streams.pipe("llm", llm.stream(payload["prompt"]))  # sync iterable
        return "".join(tokens)

    @task(id="chat-async")
    async def chat_async(payload: dict) -> str:
        tokens = await streams.pipe("llm", llm.astream(payload["prompt"]))  # async
        return "".join(tokens)

Each chunk (any JSON value) goes to the server as soon as the one before it
has been sent; chunks that arrive meanwhile travel together. A subscriber
(``runs.subscribe``) receives them as ``stream`` events; ``runs.read_stream``
reads the whole stream, from the start, at any time.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterable, Awaitable, Iterable
from typing import Any, TypeVar, overload

T = TypeVar("T")

_DONE = object()


def _context() -> tuple[str, Any]:
    from triggerfish.sdk._client import resolve_client
    from triggerfish.sdk._durable import _current

    run = _current.get()
    if run is None:
        raise RuntimeError(
            "streams.pipe works inside a running task; read a stream from outside "
            "with client.runs.read_stream(run_id, key)"
        )
    return run.run_id, resolve_client(None)


class _Sender:
    """Sends chunks from a thread, each request carrying what queued meanwhile."""

    def __init__(self, key: str) -> None:
        from triggerfish.sdk._calls import Call

        self._call = Call
        self._run_id, self._client = _context()
        self._key = key
        self._seq = 0
        self._queue: queue.Queue[Any] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"stream-{key}", daemon=True)
        self._thread.start()

    def put(self, chunk: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def close(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        done = False
        while not done:
            chunks = [self._queue.get()]
            while True:
                try:
                    chunks.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if chunks[-1] is _DONE:
                chunks.pop()
                done = True
            if chunks and self._error is None:
                try:
                    self._send(chunks)
                except BaseException as exc:  # surfaces in the task at its next chunk
                    self._error = exc

    def _send(self, chunks: list[Any]) -> None:
        call = self._call(
            "POST",
            f"/api/v1/runs/{self._run_id}/streams/{self._key}",
            lambda _: None,
            json={"seq": self._seq, "chunks": chunks},
        )
        self._client._transport.send(call)
        self._seq += len(chunks)


class Streams:
    @overload
    def pipe(self, key: str, source: AsyncIterable[T]) -> Awaitable[list[T]]: ...

    @overload
    def pipe(self, key: str, source: Iterable[T]) -> list[T]: ...

    def pipe(self, key: str, source: Iterable[T] | AsyncIterable[T]) -> Any:
        """Send each chunk of ``source`` to the run's stream ``key`` as it comes; the
        chunks, once ``source`` is exhausted (awaitable for an async iterable)."""
        if isinstance(source, AsyncIterable):
            return self._pipe_async(key, source)
        sender = _Sender(key)
        out: list[T] = []
        try:
            for chunk in source:
                sender.put(chunk)
                out.append(chunk)
        finally:
            sender.close()
        return out

    async def _pipe_async(self, key: str, source: AsyncIterable[T]) -> list[T]:
        sender = _Sender(key)
        out: list[T] = []
        try:
            async for chunk in source:
                sender.put(chunk)
                out.append(chunk)
        finally:
            await asyncio.to_thread(sender.close)
        return out


streams = Streams()
