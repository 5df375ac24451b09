"""Streams and subscriptions through real processes: a task pipes chunks, a client
subscribed to its run sees them live and the run's end; the stream stays stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import support
from tests.support import Stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """SQLite only: the store's side of streams runs on both stores in tests/api."""
    with support.open_stack("sqlite", tmp_path, workers=[{"concurrency": 2}]) as opened:
        yield opened


def test_a_task_streams_to_a_subscriber_and_the_stream_is_kept(stack: Stack) -> None:
    client = stack.client
    for task_id, prefix in (("stream-sync", "w"), ("stream-async", "a")):
        handle = client.tasks.trigger(task_id, {"n": 20})
        events = list(client.runs.subscribe(handle.id))  # ends when the run is final
        expected = [f"{prefix}{i} " for i in range(20)]
        assert [e.data["chunk"] for e in events if e.kind == "stream"] == expected
        assert events[-1].status == "COMPLETED"
        assert events[-1].data["output"] == "".join(expected)
        assert client.runs.read_stream(handle.id, "llm") == expected
