"""Durable execution with real processes: crash replay, journaled steps."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests import support
from tests.support import Stack
from triggerfish import ApiError, Triggerfish

both = pytest.mark.parametrize("fresh_stack", support.BACKENDS, indirect=True)


def _count(marks: Path, name: str) -> int:
    path = marks / name
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize(
    ("fresh_stack", "task_id", "transport"),
    [
        ("sqlite", "five-steps", "socket"),
        ("postgresql", "five-steps", "socket"),
        ("sqlite", "five-steps-async", "socket"),
        # workers that talk plain HTTP requests (--no-socket) get the same guarantees
        ("postgresql", "five-steps", "http"),
    ],
    indirect=["fresh_stack"],
)
def test_sigkill_during_step_4_replays_steps_1_to_3_without_running_them_again(
    fresh_stack: Stack, tmp_path: Path, task_id: str, transport: str
) -> None:
    env = {"TRIGGERFISH_WORKER_SOCKET": "0"} if transport == "http" else {}
    first = fresh_stack.worker(concurrency=1, name="first", extra_env=env)
    marks = tmp_path / "marks"
    handle = fresh_stack.client.tasks.trigger(task_id, {"marks": str(marks)})
    support.wait_for(lambda: _count(marks, "step-4") == 1, what="step 4 to start")
    second = fresh_stack.worker(concurrency=1, name="second", extra_env=env)
    with support.processes_stopped(first, second):
        first.kill_hard()
        (marks / "go").touch()
        run = fresh_stack.client.runs.poll(handle.id, timeout=60, interval=0.1)
    assert run.status == "COMPLETED", run.error
    assert run.output == {"results": [10, 20, 30, 40, 50], "attempt": 2}
    # the body ran twice; steps 1-3 once each; step 4 was cut short and ran again
    assert _count(marks, "body") == 2
    assert [_count(marks, f"step-{i}") for i in range(1, 6)] == [1, 1, 1, 2, 1]


@both
def test_a_running_worker_rides_out_a_server_restart_without_redoing_steps(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    # a lease long enough to outlast the restart: the attempt stays current
    fresh_stack.server.stop()
    server = support.start_server(fresh_stack.server.db_url, tmp_path, heartbeat_timeout=60)
    worker = support.start_worker(server, fresh_stack.key, tmp_path, concurrency=1)
    client = Triggerfish(api_url=server.url, secret_key=fresh_stack.key)
    marks = tmp_path / "marks"
    port = int(server.url.rsplit(":", 1)[1])
    with support.processes_stopped(worker):
        handle = client.tasks.trigger("five-steps", {"marks": str(marks)})
        support.wait_for(lambda: _count(marks, "step-4") == 1, what="step 4 to start")
        server.stop()
        # step 4 finishes while the server is away: its journal write waits and retries
        (marks / "go").touch()
        server = support.start_server(server.db_url, tmp_path, heartbeat_timeout=60, port=port)
        with support.processes_stopped(server):
            run = client.runs.poll(handle.id, timeout=60, interval=0.1)
            client.close()
    assert run.status == "COMPLETED", run.error
    assert run.output == {"results": [10, 20, 30, 40, 50], "attempt": 1}
    assert _count(marks, "body") == 1
    assert [_count(marks, f"step-{i}") for i in range(1, 6)] == [1, 1, 1, 1, 1]


FAST_SUSPEND = {"TRIGGERFISH_SUSPEND_THRESHOLD": "0.5"}


@both
def test_a_suspended_run_survives_a_full_restart_of_server_and_workers(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    marks = tmp_path / "marks"
    worker = fresh_stack.worker(concurrency=1, extra_env=FAST_SUSPEND)
    with support.processes_stopped(worker):
        handle = fresh_stack.client.tasks.trigger(
            "sleeps-durably", {"marks": str(marks), "secs": 4}
        )
        run = support.wait_for(
            lambda: (r := fresh_stack.client.runs.retrieve(handle.id)).status == "WAITING" and r,
            what="the run to suspend",
        )
        assert run.waiting_for[0]["type"] == "DURATION" and run.waiting_for[0]["until"]
        assert [s["name"] for s in run.steps] == ["before", "wait"]
    fresh_stack.server.stop()  # nothing runs anywhere while the run waits
    server = support.start_server(fresh_stack.server.db_url, tmp_path)
    client = Triggerfish(api_url=server.url, secret_key=fresh_stack.key)
    later = support.start_worker(server, fresh_stack.key, tmp_path, extra_env=FAST_SUSPEND)
    with support.processes_stopped(later, server):
        run = client.runs.poll(handle.id, timeout=60, interval=0.1)
        client.close()
    assert run.status == "COMPLETED" and run.output == ["before", "after"]
    assert [_count(marks, n) for n in ("body", "before", "after")] == [2, 1, 1]
    # (a claim handed back unstarted shows as RELEASED; it ran nothing)
    ran = [a.status for a in run.attempts if a.status != "RELEASED"]
    assert ran == ["SUSPENDED", "COMPLETED"]


@both
def test_a_token_completed_by_a_plain_post_to_its_url_resumes_the_run(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    worker = fresh_stack.worker(concurrency=1)
    with support.processes_stopped(worker):
        handle = fresh_stack.client.tasks.trigger("awaits-approval", {})
        run = support.wait_for(
            lambda: (r := fresh_stack.client.runs.retrieve(handle.id)).status == "WAITING" and r,
            what="the run to wait for its token",
        )
        token_id = run.waiting_for[0]["tokenId"]
        token = fresh_stack.client.waitpoints.retrieve_token(token_id)
        assert token.status == "WAITING" and token.tags == ["approval"]
        shown = support.cli("runs", "show", handle.id, env=_cli_env(fresh_stack))
        assert shown.returncode == 0 and f"token {token_id}" in shown.stdout
        # an outside system, no SDK and no API key: just POST JSON to the URL
        answer = httpx.post(token.url, json={"approved": True, "by": "ada"})
        assert answer.status_code == 200 and answer.json() == {"success": True}
        run = fresh_stack.client.runs.poll(handle.id, timeout=30, interval=0.05)
        assert run.output == {"ok": True, "output": {"approved": True, "by": "ada"}}
        # completing again is accepted and keeps the first data
        again = support.cli(
            "tokens",
            "complete",
            token_id,
            "--data",
            '{"approved": false}',
            env=_cli_env(fresh_stack),
        )
        assert again.returncode == 0, again.stderr
        assert fresh_stack.client.waitpoints.retrieve_token(token_id).output == {
            "approved": True,
            "by": "ada",
        }
        unknown = support.cli("tokens", "complete", "waitpoint_unknown", env=_cli_env(fresh_stack))
        assert unknown.returncode == 1 and "404" in unknown.stderr
        wrong_secret = httpx.post(token.url.rsplit("/", 1)[0] + "/nope", json={})
        assert wrong_secret.status_code == 404


def _cli_env(stack: Stack) -> dict[str, str]:
    return {"TRIGGERFISH_API_URL": stack.server.url, "TRIGGERFISH_SECRET_KEY": stack.key}


@both
def test_events_replay_and_kv_over_the_api_and_cli(fresh_stack: Stack, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    (marks / "go").touch()
    client, env = fresh_stack.client, _cli_env(fresh_stack)
    worker = fresh_stack.worker(concurrency=2)
    with support.processes_stopped(worker):
        # events: one run per subscriber, once per event id; bad payloads refused
        payload = {"email": "ada@example.com", "marks": str(marks)}
        first = client.events.send("user.signup", payload, id="signup-1")
        again = support.cli(
            "send", "user.signup", "--payload", json.dumps(payload), "--id", "signup-1", env=env
        )
        assert again.returncode == 0 and '"isCached": true' in again.stdout
        [run_id] = first["runs"]
        assert client.runs.poll(run_id, timeout=30, interval=0.05).output == "ada@example.com"
        with pytest.raises(ApiError) as refused:
            client.events.send("user.signup", {"marks": str(marks)})
        assert refused.value.status == 422 and "on-signup" in str(refused.value)
        assert _count(marks, "signup") == 1
        # replay from step 4: steps 1-3 come from the journal
        handle = client.tasks.trigger("five-steps", {"marks": str(marks)})
        assert client.runs.poll(handle.id, timeout=30, interval=0.05).status == "COMPLETED"
        out = support.cli("runs", "replay", handle.id, "--from-step", "4", env=env)
        assert out.returncode == 0, out.stderr
        replayed = client.runs.poll(out.stdout.strip(), timeout=30, interval=0.05)
        assert replayed.output["results"] == [10, 20, 30, 40, 50]
        assert [_count(marks, f"step-{i}") for i in range(1, 6)] == [1, 1, 1, 2, 2]
        # the key-value store
        client.kv.set("cursor", {"page": 3}, ttl="1h")
        assert client.kv.get("cursor") == {"page": 3}
        client.kv.delete("cursor")
        assert client.kv.get("cursor", "gone") == "gone"
