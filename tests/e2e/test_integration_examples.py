"""The two seed apps that talk to their tasks over signed HTTP, as runnable examples.

Ever Works (scenario D): dispatch with fallback, context and typed commands
through ``x-trigger-secret``. CodeCourier (scenario A's callback): the
orchestrator reports to ``/trigger/callback`` with ``{operation, args}`` and a
bearer secret. Real server and worker processes; the apps are served by the test.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import support
from tests.support.http_apps import serving_asgi
from triggerfish import Triggerfish

EXAMPLES = Path(__file__).parents[2] / "examples"
EVER_WORKS = EXAMPLES / "ever_works"
CODECOURIER = EXAMPLES / "codecourier"
SECRET = "example-callback-secret"


def _example_module(folder: Path, name: str) -> Any:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[support.Stack]:
    """One server on SQLite for the module; each test starts its example's worker."""
    with support.open_stack("sqlite", tmp_path_factory.mktemp("examples")) as opened:
        yield opened


# -- Ever Works ----------------------------------------------------------------------


def _ever_works(client: Triggerfish | None, enabled: bool = True) -> tuple[Any, Any]:
    app_mod = _example_module(EVER_WORKS, "everworks.app")
    store = app_mod.Store()
    store.directories["d1"] = app_mod.Directory("d1", "AI tools", ["Writing", "Image editing"])
    app = app_mod.create_app(store, callback_secret=SECRET, trigger_enabled=enabled, client=client)
    return store, app


def test_ever_works_dispatches_to_the_task_which_posts_commands_back(
    stack: support.Stack,
) -> None:
    client = Triggerfish(api_url=stack.server.url, secret_key=stack.key, socket=False)
    store, app = _ever_works(client)
    with serving_asgi(app) as url:
        worker = stack.worker(
            project=EVER_WORKS,
            extra_env={"EVER_WORKS_API_URL": url, "TRIGGER_CALLBACK_SECRET": SECRET},
        )
        with support.processes_stopped(worker):
            started = httpx.post(f"{url}/directories/d1/generate").json()
            assert started["mode"] == "remote" and started["runId"]
            assert not [a for a in store.applied if a["source"] == "local"]
            done = client.runs.poll(started["runId"], timeout=60, interval=0.05)
        assert done.status == "COMPLETED", done.error
        shown = httpx.get(f"{url}/directories/d1").json()
    client.close()
    assert shown["status"] == "ready"
    assert [i["category"] for i in shown["items"]] == ["Writing", "Image editing"]
    assert {a["source"] for a in store.applied} == {"remote"}
    assert [s["name"] for s in done.steps] == ["context", "generate", "commands"]


def test_ever_works_refuses_a_wrong_or_missing_secret_and_changes_nothing() -> None:
    store, app = _ever_works(None)
    commands = {"commands": [{"type": "set_status", "status": "ready"}]}
    path = "/internal/trigger/directories/d1/commands"
    with serving_asgi(app) as url:
        wrong = httpx.post(f"{url}{path}", json=commands, headers={"x-trigger-secret": "nope"})
        missing = httpx.post(f"{url}{path}", json=commands)
        context = httpx.get(f"{url}/internal/trigger/directories/d1/context")
        bad = httpx.post(
            f"{url}{path}",
            json={"commands": [{"type": "drop_table"}]},
            headers={"x-trigger-secret": SECRET},
        )
    assert (wrong.status_code, missing.status_code, context.status_code) == (401, 401, 401)
    assert bad.status_code == 422
    assert store.applied == [] and store.directories["d1"].status == "pending"


def test_ever_works_generates_in_process_when_disabled_or_unreachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, app = _ever_works(None, enabled=False)
    with serving_asgi(app) as url:
        local = httpx.post(f"{url}/directories/d1/generate").json()
    assert local == {"directory": "d1", "mode": "local", "runId": None}
    assert store.directories["d1"].status == "ready"

    down = Triggerfish(
        api_url=f"http://127.0.0.1:{support.free_port()}", secret_key="tr_dev_x", socket=False
    )
    store, app = _ever_works(down)
    with caplog.at_level(logging.WARNING, logger="everworks"), serving_asgi(app) as url:
        fallback = httpx.post(f"{url}/directories/d1/generate").json()
    down.close()
    assert fallback["mode"] == "local" and store.directories["d1"].status == "ready"
    assert "unreachable" in caplog.text
    assert [h["mode"] for h in store.history] == ["local"]


# -- CodeCourier ---------------------------------------------------------------------


def test_codecourier_reports_each_step_through_the_signed_callback(
    stack: support.Stack,
) -> None:
    app_mod = _example_module(CODECOURIER, "codecourier.app")
    runs = app_mod.Runs()
    runs.runs["r1"] = app_mod.AppRun("r1", max_iterations=5, checker_failures=2)
    runs.runs["r2"] = app_mod.AppRun("r2")
    client = stack.client
    app = app_mod.create_app(runs, callback_secret=SECRET)
    with serving_asgi(app) as url:
        worker = stack.worker(
            project=CODECOURIER,
            extra_env={"CODECOURIER_APP_URL": url, "TRIGGER_CALLBACK_SECRET": SECRET},
        )
        with support.processes_stopped(worker):
            handle = client.tasks.trigger("workflow-orchestrator", {"runId": "r1"})
            done = client.runs.poll(handle.id, timeout=60, interval=0.05)
            # the app rotates its secret; the worker still has the old one
            app.state.verifier.secret = "rotated"
            refused = client.tasks.trigger("workflow-orchestrator", {"runId": "r2"})
            failed = client.runs.poll(refused.id, timeout=60, interval=0.05)
    assert done.status == "COMPLETED", done.error
    assert done.output["iterations"] == 3 and done.output["status"] == "completed"
    r1 = runs.runs["r1"]
    assert [p["step"] for p in r1.progress] == [
        "provision",
        *["designer", "checker"] * 3,
        "pr",
        "kill-sandbox",
    ]
    designs = [p for p in r1.progress if p["step"] == "designer"]
    assert [d["feedback"] for d in designs] == [None, "fix issue 1", "fix issue 2"]
    assert r1.status == "completed" and r1.pr == "https://git.example/pr/r1-3"
    assert failed.status == "FAILED" and "401" in str(failed.error)
    assert runs.runs["r2"].progress == [] and runs.runs["r2"].status == "started"
