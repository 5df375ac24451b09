"""A worker given two servers of one database (issue 17, defect 9): when its server
dies it moves to the other at once, keeps its running attempt's lease, and goes on
taking runs."""

from __future__ import annotations

import signal
from pathlib import Path

from tests import support
from triggerfish import Triggerfish


def test_a_worker_keeps_running_runs_after_its_first_server_is_stopped(
    pg_template: str, tmp_path: Path
) -> None:
    with support.database("postgresql", tmp_path, pg_template) as db_url:
        key = support.create_key(db_url)
        first = support.start_server(db_url, tmp_path)
        second = support.start_server(db_url, tmp_path)
        with support.processes_stopped(first, second):
            worker = support.start_worker(
                first, key, tmp_path, concurrency=2, api_url=f"{first.url},{second.url}"
            )
            client = Triggerfish(api_url=f"{first.url},{second.url}", secret_key=key)
            with support.processes_stopped(worker):
                try:
                    before = client.tasks.trigger("hello", {"who": "first"})
                    assert client.runs.poll(before.id, timeout=60).status == "COMPLETED"
                    marks = tmp_path / "marks"
                    running = client.tasks.trigger("blocks", {"marks": str(marks)})
                    support.wait_for(
                        lambda: (marks / "started-1").exists(), what="the attempt to start"
                    )
                    first.stop(signal.SIGKILL)
                    # the heartbeat timeout is 3 s: the worker must have moved to
                    # the second server well within it to keep its lease
                    (marks / "go").touch()
                    done = client.runs.poll(running.id, timeout=60, interval=0.05)
                    assert done.status == "COMPLETED", done
                    assert done.attempt_count == 1 and done.output["attempt"] == 1
                    after = [client.tasks.trigger("hello", {"who": f"w{i}"}) for i in range(5)]
                    for handle in after:
                        run = client.runs.poll(handle.id, timeout=60, interval=0.05)
                        assert run.status == "COMPLETED", run
                    assert client._transport.servers.current == second.url
                    assert worker.proc.poll() is None, worker.log.read_text()
                    assert f"trying {second.url}" in worker.log.read_text()
                finally:
                    client.close()
