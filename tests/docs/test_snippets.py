"""The README and docs/ run: every tagged code block against a live stack.

The tag convention is described in ``tests/docs/snippets.py``. One server and
one worker on a fresh SQLite store serve the whole module; each document's
Python blocks run in a process of their own, in order, sharing a namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import support
from tests.docs import snippets
from tests.docs.snippets import PythonSession, Snippet
from triggerfish import Triggerfish

EXAMPLE_TASKS = snippets.REPO / "examples" / "hello" / "tasks"
SNIPPETS = snippets.all_snippets()


@dataclass
class DocStack:
    """The live stack the snippets run against, and one Python session per document."""

    url: str
    key: str
    project: Path
    logs: Path
    placeholders: dict[str, str]
    sessions: dict[Path, PythonSession] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return support._env(
            {"TRIGGERFISH_API_URL": self.url, "TRIGGERFISH_SECRET_KEY": self.key, "PATH": path}
        )

    def session(self, document: Path) -> PythonSession:
        if document not in self.sessions:
            log = self.logs / f"snippets-{document.stem}.log"
            self.sessions[document] = PythonSession.start(self.project, self.env(), log)
        return self.sessions[document]


def _write_project(folder: Path) -> Path:
    """The example's tasks plus the definitions of the blocks tagged ``worker``."""
    project = folder / "project"
    shutil.copytree(EXAMPLE_TASKS, project / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "snippets").mkdir()
    (project / "snippets" / "__init__.py").write_text("")
    for name, source in snippets.worker_modules(SNIPPETS).items():
        (project / "snippets" / name).write_text(source)
    (project / "pyproject.toml").write_text('[tool.triggerfish]\ndirs = ["tasks", "snippets"]\n')
    return project


def _placeholders(url: str, key: str) -> dict[str, str]:
    client = Triggerfish(api_url=url, secret_key=key)
    try:
        handle = client.tasks.trigger("hello-world", {"who": "docs"})
        run = client.runs.poll(handle.id, timeout=30, interval=0.05)
        schedule = client.schedules.create(task="customer-sync", cron="0 * * * *")
    finally:
        client.close()
    return {"http://127.0.0.1:3030": url, "tr_dev_…": key, "run_…": run.id, "sched_…": schedule.id}


@pytest.fixture(scope="module")
def doc_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocStack]:
    folder = tmp_path_factory.mktemp("docs")
    project = _write_project(folder)
    db_url = support.new_sqlite_database(folder / "store.db")
    key = support.create_key(db_url)
    server = support.start_server(db_url, folder)
    stack: DocStack | None = None
    with support.processes_stopped(server):
        worker = support.start_worker(server, key, folder, project=project, concurrency=4)
        with support.processes_stopped(worker):
            stack = DocStack(server.url, key, project, folder, _placeholders(server.url, key))
            try:
                yield stack
            finally:
                for session in stack.sessions.values():
                    session.stop()


def _run_python(stack: DocStack, snippet: Snippet) -> None:
    session = stack.session(snippet.document)
    # a block may rely on the document's earlier blocks (under -k too)
    for earlier in SNIPPETS:
        if earlier.document == snippet.document and earlier.line < snippet.line:
            runs = earlier.mode in ("run", "define") and earlier.lang == "python"
            if runs and earlier.line not in session.done:
                session.run(earlier, stack.placeholders)
    session.run(snippet, stack.placeholders)


def _run_bash(stack: DocStack, snippet: Snippet) -> None:
    script = snippets.bash_script(snippets.substitute(snippet.code, stack.placeholders))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=stack.env(),
        cwd=stack.project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (
        f"{snippet.where} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.where for s in SNIPPETS])
def test_documented_snippet_runs(doc_stack: DocStack, snippet: Snippet) -> None:
    if snippet.mode is None:
        pytest.fail(f"{snippet.where}: untagged code block (see tests/docs/snippets.py)")
    if snippet.mode == "skip":
        pytest.skip(snippet.reason)
    if snippet.lang == "python":
        _run_python(doc_stack, snippet)
    elif snippet.lang == "bash" and snippet.mode == "run":
        _run_bash(doc_stack, snippet)
    elif snippet.lang == "json" and snippet.mode == "run":
        json.loads(snippet.code)
    else:
        pytest.fail(f"{snippet.where}: no way to {snippet.mode} a {snippet.lang!r} block")


def test_every_code_block_is_tagged() -> None:
    untagged = [s.where for s in SNIPPETS if s.mode is None]
    assert not untagged, f"tag these blocks (see tests/docs/snippets.py): {untagged}"


def test_api_calls_named_in_the_prose_exist(scratch: PythonSession) -> None:
    """Inline code such as `triggerfish.runs.reschedule(run_id, "5m")` names real calls."""
    client = _snippet("run", "import triggerfish\nclient = triggerfish.Triggerfish()\n")
    scratch.run(client, {})
    failures = []
    for reference in (r for doc in snippets.DOCUMENTS for r in snippets.inline_references(doc)):
        try:
            scratch.run(reference, {})
        except snippets.ChildFailed as exc:
            failures.append(str(exc).splitlines()[-1] + f" ({reference.where})")
    assert not failures, "\n".join(failures)


# -- the runner itself ------------------------------------------------------------------


def _snippet(mode: str, code: str) -> Snippet:
    return Snippet(snippets.REPO / "README.md", 1, "python", code, mode=mode)


@pytest.fixture
def scratch(doc_stack: DocStack) -> Iterator[PythonSession]:
    session = PythonSession.start(
        doc_stack.project, doc_stack.env(), doc_stack.logs / "scratch.log"
    )
    yield session
    session.stop()


@pytest.mark.parametrize(
    ("mode", "code", "complaint"),
    [
        ("run", "import triggerfish\ntriggerfish.runs.retreive('run_x')\n", "retreive"),
        (
            "define",
            "from triggerfish import task, wait\n@task(id='t')\ndef t(p: dict) -> None:\n"
            "    wait.create_tokn(timeout='1h')\n",
            "create_tokn",
        ),
        ("fragment", "wait.create_token(timout='1h')\n", "timout"),
        ("fragment", "step.run('a', print, reTry=None)\n", "reTry"),
    ],
)
def test_a_call_that_does_not_exist_fails_the_snippet(
    scratch: PythonSession, mode: str, code: str, complaint: str
) -> None:
    with pytest.raises(snippets.ChildFailed, match=complaint):
        scratch.run(_snippet(mode, code), {})


def test_tags_are_read_with_their_flags_options_and_reasons(tmp_path: Path) -> None:
    text = (
        "<!-- snippet: run worker\nsetup: doc = 1\nsetup: x = 2\n-->\n"
        "```python\nprint(doc)\n```\n\n"
        "<!-- snippet: skip needs a production host -->\n```bash\nexit 1\n```\n\n"
        "```json\n{}\n```\n"
    )
    run, skip, untagged = snippets.parse(snippets.REPO / "README.md", text)
    assert (run.mode, run.setup, run.line) == ("run", "doc = 1\nx = 2", 6)
    assert run.flags == frozenset({"worker"})
    assert (skip.mode, skip.reason) == ("skip", "needs a production host")
    assert untagged.mode is None
    with pytest.raises(snippets.SnippetTagError, match="needs a reason"):
        snippets.parse(tmp_path, "<!-- snippet: skip -->\n```bash\n```\n")
