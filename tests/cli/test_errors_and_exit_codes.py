"""A CLI that scripts can trust and an SDK that survives restarts (issue 20, part 1).

Connection errors are typed and name the URL; the CLI prints one line and a hint
(a traceback only with --debug) and exits with a documented code; waiting
commands reconnect when the server comes back.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.cli.conftest import Live, invoke, invoke_async
from triggerfish import Triggerfish
from triggerfish.cli.dev import DevSession
from triggerfish.errors import (
    KeyRejected,
    ServerUnreachable,
    TriggerfishError,
    WrongEnvironment,
)
from triggerfish.worker.discovery import ProjectConfig

CLI = [sys.executable, "-m", "triggerfish.cli.main"]


def _dead_url() -> str:
    return f"http://127.0.0.1:{support.free_port()}"


def _popen(args: list[str], env: dict[str, str], cwd: Path | None = None) -> Any:
    return subprocess.Popen(
        args,
        env=support._env({"COLUMNS": "200", **env}),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _claimed(live: Live) -> dict[str, Any]:
    """The next run triggered (by a process of the test), claimed by the test's worker."""
    body = {"worker_id": live.worker_id, "max": 1, "wait": 0, "start": 1}
    found: list[dict[str, Any]] = []

    async def one() -> bool:
        found.extend((await live.post("/worker/v1/dequeue", body))["runs"])
        return bool(found)

    await support.wait_for_async(one, 30, what="a run to claim")
    return found[0]


def test_sdk_raises_server_unreachable_naming_the_url() -> None:
    url = _dead_url()
    client = Triggerfish(api_url=url, secret_key="tr_dev_" + "a" * 32)
    with pytest.raises(ServerUnreachable) as caught:
        client.runs.retrieve("run_1")
    assert isinstance(caught.value, TriggerfishError)
    assert url in str(caught.value) and "triggerfish dev" in str(caught.value)
    with pytest.raises(ServerUnreachable):
        client.tasks.trigger("job", {})
    client.close()


async def test_async_sdk_raises_server_unreachable_too() -> None:
    client = Triggerfish(api_url=_dead_url(), secret_key="tr_dev_" + "a" * 32)
    with pytest.raises(ServerUnreachable):
        await client.runs.retrieve_async("run_1")
    await client.aclose()


async def test_poll_reconnects_across_a_server_restart(live: Live) -> None:
    run_id = await live.trigger()
    claimed = await live.claim()
    client = Triggerfish(api_url=live.url, secret_key=live.key)
    real_send, refused = client._transport.send, []

    def counting(call: Any) -> Any:
        try:
            return real_send(call)
        except ServerUnreachable:
            refused.append(call.path)
            raise

    client._transport.send = counting  # type: ignore[method-assign]
    polling = asyncio.create_task(
        asyncio.to_thread(client.runs.poll, run_id, timeout=60, interval=0.05)
    )
    await live.stop()
    await support.wait_for_async(lambda: bool(refused), 30, what="poll to find no server")
    await live.start()
    await live.finish(claimed, output="done")
    run = await asyncio.wait_for(polling, 30)
    assert run.status == "COMPLETED" and run.output == "done"
    client.close()


def test_cli_connection_error_is_one_line_naming_url_and_environment_with_a_hint() -> None:
    url = _dead_url()
    env = {"TRIGGERFISH_API_URL": url, "TRIGGERFISH_SECRET_KEY": "tr_prod_" + "a" * 32}
    result = invoke("runs", "list", env=env)
    assert result.exit_code == 4, result.stderr
    error, hint = result.stderr.strip().splitlines()
    assert error.startswith("error: ") and url in error and "environment prod" in error
    assert hint.startswith("hint: ") and "triggerfish dev" in hint
    for debug in (["runs", "list", "--debug"], ["--debug", "runs", "list"]):
        assert isinstance(invoke(*debug, env=env).exception, ServerUnreachable)


async def test_trigger_wait_exit_codes_say_how_the_run_ended(live: Live) -> None:
    # the exit code is 1 for a run that failed, 0 for one that completed, 3 when
    # the CLI gave up waiting: scripts and CI can trust `trigger --wait`
    failing = asyncio.create_task(
        invoke_async("trigger", "job", "--wait", "--timeout", "60", env=live.env)
    )
    await live.finish(await _claimed(live), ok=False)
    result = await asyncio.wait_for(failing, 30)
    assert result.exit_code == 1 and "it broke" in result.stdout

    done = asyncio.create_task(invoke_async("trigger", "job", "--wait", "--json", env=live.env))
    await live.finish(await _claimed(live), output={"n": 1})
    result = await asyncio.wait_for(done, 30)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["status"] == "COMPLETED" and answer["output"] == {"n": 1}

    waited = await invoke_async("trigger", "job", "--wait", "--timeout", "0.3", env=live.env)
    assert waited.exit_code == 3 and "did not finish" in waited.stderr


async def test_dev_banners_try_line_reaches_a_server_on_another_port(
    live: Live, tmp_path: Path
) -> None:
    session = DevSession(ProjectConfig(tmp_path), "127.0.0.1", live.port, 1)
    line = session.try_line(live.key, ["job"])
    assert f"TRIGGERFISH_API_URL={live.url}" in line
    words = shlex.split(line)
    env = dict(w.split("=", 1) for w in words[:2])
    assert words[3] == "trigger"
    running = asyncio.create_task(invoke_async(*words[3:], env=env))
    await live.finish(await _claimed(live))
    result = await asyncio.wait_for(running, 30)
    assert result.exit_code == 0, result.output


async def test_logs_follow_reconnects_and_prints_one_json_object_a_line(live: Live) -> None:
    run_id = await live.trigger()
    claimed = await live.claim()
    await live.log(claimed, "one")
    proc = _popen([*CLI, "runs", "logs", run_id, "--follow", "--json"], live.env)
    assert proc.stdout is not None and proc.stderr is not None
    first = await asyncio.to_thread(proc.stdout.readline)
    assert json.loads(first)["message"] == "one"
    await live.stop()
    warned = await asyncio.to_thread(proc.stderr.readline)
    assert "cannot reach" in warned and live.url in warned
    await live.start()
    await live.log(claimed, "two")
    await live.finish(claimed)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0
    assert [json.loads(x)["message"] for x in out.splitlines()] == ["two"]


@pytest.mark.parametrize("command", [["db", "migrate"], ["keys", "create", "--env", "prod"]])
def test_admin_commands_without_database_url_say_so(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*command)
    assert result.exit_code == 2
    assert "DATABASE_URL is not set" in result.stderr and result.exception is not None
    assert not (tmp_path / ".triggerfish").exists()  # no SQLite store made on the quiet


async def test_a_key_of_another_environment_or_server_is_named(live: Live) -> None:
    stranger = "tr_prod_" + "b" * 32
    client = Triggerfish(api_url=live.url, secret_key=stranger)
    with pytest.raises(KeyRejected) as caught:
        await asyncio.to_thread(client.runs.list)
    assert live.url in str(caught.value) and "prod key" in str(caught.value)
    client.close()
    with pytest.raises(WrongEnvironment):
        Triggerfish(api_url=live.url, secret_key=live.key, env="prod")
    result = await invoke_async("runs", "list", "--env", "staging", env=live.env)
    assert result.exit_code == 2
    assert "staging" in result.stderr and "'dev'" in result.stderr


async def test_the_server_refuses_a_request_for_another_environment_than_the_keys(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--env is checked by the server too: a key whose shape does not say its
    environment, or a client that is not ours, still gets a refusal naming both."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    from triggerfish.errors import ENVIRONMENT_HEADER
    from triggerfish.sdk._socket import PATH

    await live.register()
    auth = {"Authorization": f"Bearer {live.key}"}
    asks_prod = {**auth, ENVIRONMENT_HEADER: "prod"}
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/api/v1/runs", None),
        ("POST", "/api/v1/tasks/job/trigger", {"payload": {}}),  # the trigger's fast lane
    ]
    for method, path, body in calls:
        answer = await live.http.request(method, live.url + path, json=body, headers=asks_prod)
        assert answer.status_code == 403, (path, answer.text)
        assert "'prod'" in answer.text and "'dev'" in answer.text, answer.text
        assert ENVIRONMENT_HEADER in answer.text
    same = await live.http.get(
        f"{live.url}/api/v1/runs", headers={**auth, ENVIRONMENT_HEADER: "dev"}
    )
    assert same.status_code == 200, same.text
    with pytest.raises(InvalidStatus):  # the client socket's handshake is refused too
        async with connect(
            "ws" + live.url.removeprefix("http") + PATH, additional_headers=asks_prod
        ):
            pass

    # the SDK sends the environment it was given, over the socket and HTTP alike
    monkeypatch.setattr("triggerfish.sdk._client.key_environment", lambda key: None)
    for socket in (True, False):
        client = Triggerfish(api_url=live.url, secret_key=live.key, env="prod", socket=socket)
        with pytest.raises(TriggerfishError) as caught:
            await asyncio.to_thread(client.tasks.trigger, "job", {})
        assert "403" in str(caught.value) and "'dev'" in str(caught.value), caught.value
        await asyncio.to_thread(client.close)
        client = Triggerfish(api_url=live.url, secret_key=live.key, env="dev", socket=socket)
        handle = await asyncio.to_thread(client.tasks.trigger, "job", {})
        assert (await asyncio.to_thread(client.runs.retrieve, handle.id)).id == handle.id
        await asyncio.to_thread(client.close)


def test_dev_banners_try_line_prefers_the_example_greeting(tmp_path: Path) -> None:
    """The example project's first task refuses an empty payload; the Try line
    must name one that completes with it."""
    session = DevSession(ProjectConfig(tmp_path), "127.0.0.1", 3199, 1)
    assert " trigger hello-world " in session.try_line("k", ["charge-card", "hello-world"])
    assert " trigger charge-card " in session.try_line("k", ["charge-card", "flaky-sync"])
