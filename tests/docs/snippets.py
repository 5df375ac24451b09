"""The documentation as a contract: find the tagged code blocks of the docs and run them.

How to tag a block
------------------
Put an HTML comment on the line right above the opening fence (GitHub does not
render it)::

    <!-- snippet: run -->
    ```python
    handle = hello_world.trigger({"who": "Ada"})
    ```

Every fenced block of ``README.md`` and ``docs/*.md`` needs a tag; an untagged
block fails ``test_every_code_block_is_tagged``. The first word is the mode:

``run``
    *python*: runs against the live stack (a server and a worker on a fresh
    SQLite store) in the document's own Python process, after the document's
    earlier ``run`` and ``define`` blocks and in their namespace, as a reader
    would type them.
    ``TRIGGERFISH_API_URL`` and ``TRIGGERFISH_SECRET_KEY`` are set, the working
    directory holds the example project (``from tasks.hello import
    hello_world`` works) and a top-level ``await`` runs on one event loop
    shared by the document's blocks.
    *bash*: runs with ``bash -euo pipefail`` and the same variables; ``curl``
    fails on an HTTP error; ``[--option value]`` (optional arguments in the
    docs) is run with the brackets dropped.
    *json*: must parse.
``define``
    *python* that declares tasks: runs like ``run``, but its tasks go to a
    registry of their own (their ids may repeat the example's tasks' ids).
``fragment``
    *python* from inside a task's body: compiled (``await`` allowed), not run.
    Public ``triggerfish`` names may be used without an import.
``skip REASON``
    Not run; the reason is required (``skip starts a long-running server``).

Flags after the mode:

``worker``
    The stack's worker also imports the block's definitions (its code up to
    the end of its last top-level function or class, after the document's
    earlier imports), so the block can trigger, schedule or send events to
    the tasks it declares.

More options go on lines of their own inside the comment::

    <!-- snippet: run worker
    setup: doc = {"text": "a long report"}
    -->

``setup: CODE`` runs CODE (hidden from readers) before the block; repeat the
line for more.

For every Python block, each ``name.attribute`` and each call on a triggerfish
object is resolved and its arguments bound to the signature, also inside
function bodies that never run: a documented call that does not exist fails.

Placeholders in blocks are replaced before they run: ``http://127.0.0.1:3030``
by the stack's URL, ``tr_dev_…`` by its secret key, ``run_…`` by the id of a
finished run, ``sched_…`` by the id of an imperative schedule.
"""

from __future__ import annotations

import ast
import json
import re
import select
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).parents[2]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
CHILD = Path(__file__).with_name("snippet_child.py")

MODES = {"run", "define", "fragment", "skip"}
FLAGS = {"worker"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
_TAG_START = re.compile(r"^\s*<!--\s*snippet:\s*(?P<rest>.*)$")
_OPTIONAL_ARGUMENT = re.compile(r"(?<=\s)\[(--[^\]]*)\]")


class SnippetTagError(ValueError):
    """A snippet tag that the runner cannot follow (unknown mode, skip without a reason)."""


@dataclass(frozen=True)
class Snippet:
    """One fenced code block of a document, with its tag (``mode`` None: untagged)."""

    document: Path
    line: int  #: 1-based line of the block's first code line
    lang: str
    code: str
    mode: str | None = None
    flags: frozenset[str] = frozenset()
    reason: str = ""
    setup: str = ""

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}"

    def numbered_source(self) -> str:
        """The code, preceded by blank lines so tracebacks name the document's lines."""
        return "\n" * (self.line - 1) + self.code


def _parse_tag(lines: list[str], where: str) -> dict[str, Any]:
    """The mode, flags and options of a ``<!-- snippet: … -->`` comment's lines."""
    first = _TAG_START.match(lines[0])
    assert first is not None
    head = first["rest"].split("-->")[0].split()
    if not head or head[0] not in MODES:
        raise SnippetTagError(f"{where}: snippet mode must be one of {sorted(MODES)}, got {head}")
    mode, rest = head[0], head[1:]
    tag: dict[str, Any] = {"mode": mode, "flags": frozenset(), "reason": "", "setup": ""}
    if mode == "skip":
        if not rest:
            raise SnippetTagError(f"{where}: `snippet: skip` needs a reason after it")
        tag["reason"] = " ".join(rest)
    elif unknown := set(rest) - FLAGS:
        raise SnippetTagError(f"{where}: unknown snippet flags {sorted(unknown)}")
    else:
        tag["flags"] = frozenset(rest)
    setup = []
    for line in lines[1:]:
        option = line.strip().removesuffix("-->").strip()
        if not option:
            continue
        key, _, value = option.partition(":")
        if key != "setup":
            raise SnippetTagError(f"{where}: unknown snippet option {key!r} (known: setup)")
        setup.append(value.strip())
    tag["setup"] = "\n".join(setup)
    return tag


def _tag_above(lines: list[str], fence_index: int, where: str) -> dict[str, Any] | None:
    """The tag whose comment ends on the line right above the fence, if any."""
    end = fence_index - 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return None
    start = end
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    if start < 0 or not _TAG_START.match(lines[start]):
        return None
    return _parse_tag(lines[start : end + 1], where)


def parse(document: Path, text: str | None = None) -> list[Snippet]:
    """Every fenced code block of ``document`` with its tag."""
    lines = (document.read_text() if text is None else text).splitlines()
    snippets: list[Snippet] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        code = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        where = f"{document.name}:{i + 2}"
        tag = _tag_above(lines, i, where) or {}
        snippets.append(Snippet(document, i + 2, opening["lang"], code, **tag))
        i = end + 1
    return snippets


_INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
_API_ROOTS = re.compile(
    r"^(?:triggerfish|client|Triggerfish|step|wait|events|kv|metadata|schedules|"
    r"queues|runs|tasks|batches|logger|retry|queue|idempotency_keys)\b[.(]"
)


def inline_references(document: Path) -> list[Snippet]:
    """The document's inline code spans that name a call of the API (``wait.for_(minutes=5)``).

    Spans that are not Python expressions (``metadata.set/append``, ``…``) are left out.
    """
    text = document.read_text()
    found = []
    for match in _INLINE_CODE.finditer(text):
        code = " ".join(match[1].split())
        if not _API_ROOTS.match(code) or code.endswith((".py", ".md")):
            continue  # not a call, or a file's name (`retry.py`)
        try:
            ast.parse(code, mode="eval")
        except SyntaxError:
            continue
        line = text.count("\n", 0, match.start()) + 1
        found.append(Snippet(document, line, "python", code + "\n", mode="fragment"))
    return found


def all_snippets() -> list[Snippet]:
    return [s for doc in DOCUMENTS for s in parse(doc)]


def substitute(code: str, placeholders: dict[str, str]) -> str:
    for placeholder, value in placeholders.items():
        code = code.replace(placeholder, value)
    return code


def bash_script(code: str) -> str:
    """The block as a script: ``[--optional arguments]`` kept, ``curl`` failing on 4xx/5xx."""
    prelude = 'curl() { command curl --silent --show-error --fail-with-body "$@"; }\n'
    return prelude + _OPTIONAL_ARGUMENT.sub(r"\1", code)


def leading_definitions(snippet: Snippet) -> str:
    """The block's code up to the end of its last top-level function or class definition."""
    tree = ast.parse(snippet.code)
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    ends = [s.end_lineno or s.lineno for s in tree.body if isinstance(s, kinds)]
    if not ends:
        raise SnippetTagError(f"{snippet.where}: tagged `worker` but defines no task")
    return "\n".join(snippet.code.splitlines()[: max(ends)]) + "\n"


def worker_modules(snippets: list[Snippet]) -> dict[str, str]:
    """File name → source of the task modules the stack's worker imports for ``worker`` blocks.

    Each module starts with the imports of the document's earlier Python blocks,
    since a block may rely on them as a reader does.
    """
    modules: dict[str, str] = {}
    imports: dict[Path, list[str]] = {}
    for snippet in snippets:
        if snippet.mode not in ("run", "define") or snippet.lang != "python":
            continue
        earlier = imports.setdefault(snippet.document, [])
        if "worker" in snippet.flags:
            name = f"{snippet.document.stem.lower().replace('-', '_')}_{snippet.line}.py"
            modules[name] = "\n".join(earlier) + "\n" + leading_definitions(snippet)
        tree = ast.parse(snippet.code)
        earlier += [ast.unparse(s) for s in tree.body if isinstance(s, ast.Import | ast.ImportFrom)]
    return modules


class ChildFailed(AssertionError):
    """A snippet raised, or its process stopped answering."""


@dataclass
class PythonSession:
    """One document's snippet process (``snippet_child.py``): its blocks share one namespace."""

    proc: subprocess.Popen[str]
    log: Path
    done: set[int] = field(default_factory=set)
    failed: list[str] = field(default_factory=list)  #: blocks that failed, for later messages

    @classmethod
    def start(cls, project: Path, env: dict[str, str], log: Path) -> PythonSession:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(project)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            env=env,
            text=True,
        )
        return cls(proc, log)

    def send(self, request: dict[str, Any], timeout: float = 60) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise ChildFailed(
                f"{request['filename']}: no answer within {timeout}s; the snippet process's "
                f"output:\n{self.log.read_text()[-4000:]}"
            )
        answer = json.loads(line)
        if not answer["ok"]:
            earlier = f" (after {', '.join(self.failed)} failed)" if self.failed else ""
            self.failed.append(request["filename"])
            raise ChildFailed(f"{request['filename']} failed{earlier}:\n{answer['error']}")

    def run(self, snippet: Snippet, placeholders: dict[str, str]) -> None:
        request = {
            "mode": snippet.mode,
            "code": substitute(snippet.numbered_source(), placeholders),
            "setup": snippet.setup,
            "filename": snippet.where,
        }
        self.done.add(snippet.line)
        self.send(request)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
