"""The official TypeScript SDK, pinned in ``tests/interop/ts`` (4.8.3, and 3.3.17 as
``sdk3``), drives a real server and a Python worker through every call it makes
from outside a task: trigger and read output, retrieve, list, cancel, replay,
reschedule, metadata updates, batches with a refused item, waitpoint tokens,
queues, environment variables, and a task reading a variable set through the
SDK; and the README's TypeScript example, as written.

``./scripts/test`` and ``.ci/run`` install the packages (``npm ci``); this
module installs them too when they are missing. Without Node it skips, except
in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import support
from tests.docs import snippets
from tests.support import Stack, processes_stopped

TS = Path(__file__).parent / "ts"
#: the exact versions the README promises (package.json pins them, the lockfile too)
PINNED = {"@trigger.dev/sdk": "4.8.3", "sdk3": "3.3.17"}

pytestmark = pytest.mark.timeout(180)


def _installed_version(package: str) -> str | None:
    manifest = TS / "node_modules" / package / "package.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text())["version"])


@pytest.fixture(scope="module")
def node() -> str:
    """Node, with the pinned SDKs installed from the lockfile."""
    found = shutil.which("node")
    npm = shutil.which("npm")
    if found is None or npm is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are required in CI for the TypeScript SDK interop test")
        pytest.skip("node/npm not installed: the TypeScript SDK interop test needs Node 20")
    if any(_installed_version(p) != v for p, v in PINNED.items()):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=TS, check=True, timeout=300)
    assert {p: _installed_version(p) for p in PINNED} == PINNED
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A server, a worker of the test project's tasks and one of the README's example."""
    folder = tmp_path_factory.mktemp("interop")
    with support.open_stack("sqlite", folder, workers=[{"concurrency": 4}]) as stack:
        example = stack.worker(project=snippets.REPO / "examples" / "hello", name="example")
        with processes_stopped(example):
            yield stack


def project_ref(stack: Stack) -> str:
    who = httpx.get(
        f"{stack.server.url}/api/v2/whoami", headers={"Authorization": f"Bearer {stack.key}"}
    ).json()
    return str(who["project"]["ref"])


def run_script(node: str, stack: Stack, script: str | Path, timeout: float = 90) -> str:
    """Run a Node script against ``stack``; its output, or a failure showing it."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TRIGGER", "NODE_OPTIONS"))},
        "TRIGGER_API_URL": stack.server.url,
        "TRIGGER_SECRET_KEY": stack.key,
        "PROJECT_REF": project_ref(stack),
    }
    done = subprocess.run(
        [node, str(script)], cwd=TS, env=env, capture_output=True, text=True, timeout=timeout
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{script} failed:\n{output}"
    return output


def _passed(output: str) -> int:
    """How many of a script's steps passed (each prints ``ok <step>``)."""
    return sum(line.startswith("ok ") for line in output.splitlines())


def test_sdk_4_8_3_drives_every_call(node: str, stack: Stack) -> None:
    output = run_script(node, stack, "sdk4.mjs")
    assert _passed(output) == 12, output


def test_sdk_3_3_17_drives_the_calls_a_3x_app_makes(node: str, stack: Stack) -> None:
    output = run_script(node, stack, "sdk3.mjs")
    assert _passed(output) == 6, output


def test_the_readme_typescript_example_runs_as_written(node: str, stack: Stack) -> None:
    """The README's "Calling Triggerfish from TypeScript" block, placeholders filled in."""
    readme = snippets.parse(snippets.REPO / "README.md")
    (block,) = [s for s in readme if s.lang == "ts" and "// app.mjs" in s.code]
    code = (
        block.code.replace("http://127.0.0.1:3030", stack.server.url)
        .replace("tr_dev_…", stack.key)
        .replace("proj_…", project_ref(stack))
    )
    script = TS / "readme-example.generated.mjs"  # beside node_modules, so imports resolve
    script.write_text(code)
    try:
        output = run_script(node, stack, script)
    finally:
        script.unlink()
    assert "COMPLETED { message: 'Hello TypeScript' }" in output, output
    assert "{ name: 'GREETING', value: 'hello', isSecret: false }" in output, output
    assert "{ approved: true }" in output, output


def test_sdk_4_8_3_realtime_and_streams(node: str, stack: Stack) -> None:
    """subscribeToRun through a run's life, a public token's scope, streams.read live,
    withStreams(), and a stream written by the SDK's own writer."""
    output = run_script(node, stack, "realtime4.mjs", timeout=150)
    assert _passed(output) == 5, output
