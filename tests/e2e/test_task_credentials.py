"""What a task process holds: its attempt's credential, never the worker's secrets."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests import support
from tests.support import Stack
from triggerfish._redact import PRIVATE_ENV_NAMES


def _marked_secret() -> str:
    return "tfsecret-" + secrets.token_hex(16)


@pytest.fixture(scope="module", params=support.BACKENDS)
def stack_with_secrets(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A worker started with every name of the strip list set, and a stray API key."""
    backend = request.param
    folder = tmp_path_factory.mktemp(f"secrets-{backend}")
    template = request.getfixturevalue("pg_template") if backend == "postgresql" else None
    with support.open_stack(backend, folder, template) as stack:
        planted = {name: _marked_secret() for name in PRIVATE_ENV_NAMES}
        planted["TRIGGERFISH_SECRET_KEY"] = stack.key  # the worker's real key, which it needs
        planted["SOME_OTHER_KEY"] = "tr_prod_" + secrets.token_hex(16)  # shaped like an API key
        planted["VISIBLE_SETTING"] = "an ordinary value"
        worker = stack.worker(concurrency=2, extra_env=planted)
        with support.processes_stopped(worker):
            yield stack, planted


def _run(stack: Stack, task: str, payload: object = None) -> dict[str, object]:
    handle = stack.client.tasks.trigger(task, payload or {})
    run = stack.client.runs.poll(handle.id, timeout=60, interval=0.05)
    assert run.status == "COMPLETED", run.error
    assert isinstance(run.output, dict)
    return run.output


def test_task_processes_do_not_see_the_secret_key(
    stack_with_secrets: tuple[Stack, dict[str, str]],
) -> None:
    stack, planted = stack_with_secrets
    seen = _run(stack, "inspect-process")
    assert seen["scan_works"] is True  # the memory scan finds a value made at run time
    environ = seen["environ"]
    assert isinstance(environ, dict)
    assert environ.get("VISIBLE_SETTING") == "an ordinary value"
    secrets_planted = {n: v for n, v in planted.items() if n != "VISIBLE_SETTING"}
    for name, value in secrets_planted.items():
        assert name not in environ, f"{name} reached the task process's environment"
        assert value not in environ.values()
        assert all(value not in arg for arg in seen["argv"])  # type: ignore[attr-defined]
    # nowhere in its writable memory either: not the key, nor any planted secret
    assert seen["found"] == []


@pytest.mark.parametrize("task", ["trigger-from-task", "trigger-from-async-task"])
def test_a_task_triggers_and_reads_runs_without_a_key(
    stack_with_secrets: tuple[Stack, dict[str, str]], task: str
) -> None:
    stack, _ = stack_with_secrets
    out = _run(stack, task)
    assert out["me"] == "EXECUTING"  # it read its own run, while running
    runs = out["runs"]
    assert isinstance(runs, list) and len(runs) >= 3
    for run_id in runs:  # the children are real runs of the same environment
        child = stack.client.runs.poll(run_id, timeout=60, interval=0.05)
        assert child.status == "COMPLETED" and child.task_identifier == "sync-hello"
    assert stack.client.batches.retrieve(str(out["batch"])).id == out["batch"]


def test_a_task_reads_the_variables_set_through_the_api_as_its_attempt_began(
    stack_with_secrets: tuple[Stack, dict[str, str]],
) -> None:
    stack, _ = stack_with_secrets
    client = stack.client
    client.envvars.set("CALLBACK_SECRET", "first value", secret=True)
    held = client.tasks.trigger("read-env", {"name": "CALLBACK_SECRET", "hold": "release-1"})
    support.wait_for(lambda: client.runs.retrieve(held.id).status == "EXECUTING", timeout=60)
    # the running attempt keeps what it started with; the next one gets the change
    client.envvars.set("CALLBACK_SECRET", "second value", secret=True)
    client.kv.set("release-1", True)
    run = client.runs.poll(held.id, timeout=60, interval=0.05)
    assert run.output == {"first": "first value", "second": "first value"}, run.error
    assert _run(stack, "read-env", {"name": "CALLBACK_SECRET"})["first"] == "second value"
    # removed: the warm task process no longer has it either
    client.envvars.delete("CALLBACK_SECRET")
    assert _run(stack, "read-env", {"name": "CALLBACK_SECRET"})["first"] is None
    # a variable of the environment wins over the worker's own for its attempts only
    client.envvars.set("VISIBLE_SETTING", "from the environment")
    assert _run(stack, "read-env", {"name": "VISIBLE_SETTING"})["first"] == "from the environment"
    client.envvars.delete("VISIBLE_SETTING")
    assert _run(stack, "read-env", {"name": "VISIBLE_SETTING"})["first"] == "an ordinary value"
